-- wrk script for bench/bench.py: requests the paths listed in a file.
--
--   wrk -t T -c C -d D -s bench/paths.lua URL -- LIST T
--
-- Thread i of T requests the lines i+1, i+1+T, i+1+2T, ... of LIST, and
-- starts over at the end, so T threads together walk the list in order
-- (which keeps the requests of one session apart: bench.py orders session
-- lists step by step across sessions). done() prints one machine-readable
-- line that bench.py parses.
local counter = 0

function setup(thread)
    thread:set("tid", counter)
    counter = counter + 1
end

function init(args)
    paths = {}
    for line in io.lines(args[1]) do
        paths[#paths + 1] = line
    end
    nthreads = tonumber(args[2])
    idx = tid + 1
end

function request()
    local p = paths[idx]
    idx = idx + nthreads
    if idx > #paths then
        idx = idx - #paths
    end
    return wrk.format("GET", p)
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "BENCH duration_us=%d requests=%d bytes=%d errors=%d status=%d p50_us=%d p99_us=%d\n",
        summary.duration, summary.requests, summary.bytes,
        e.connect + e.read + e.write + e.timeout, e.status,
        latency:percentile(50), latency:percentile(99)))
end
