-- wrk script for bench/bench.py: requests the paths listed in a file.
--
--   wrk -t T -c C -d D -s bench/paths.lua URL -- LIST T [once]
--
-- Thread i of T requests the lines i+1, i+1+T, i+1+2T, ... of LIST, and
-- starts over at the end, so T threads together walk the list in order
-- (which keeps the requests of one session apart: bench.py orders session
-- lists step by step across sessions). With "once" a thread stops when it
-- has had the answers to its share of the list (D is then only a bound):
-- a session list is walked exactly once, every request a new window.
-- done() prints one machine-readable line that bench.py parses.
local ffi = require("ffi")
ffi.cdef [[
    typedef struct { long tv_sec; long tv_usec; } bench_timeval;
    int gettimeofday(bench_timeval *tv, void *tz);
]]

local function now_us()
    local tv = ffi.new("bench_timeval")
    ffi.C.gettimeofday(tv, nil)
    return tonumber(tv.tv_sec) * 1000000 + tonumber(tv.tv_usec)
end

local counter = 0
local threads = {}

function setup(thread)
    thread:set("tid", counter)
    counter = counter + 1
    threads[#threads + 1] = thread
end

function init(args)
    paths = {}
    for line in io.lines(args[1]) do
        paths[#paths + 1] = line
    end
    nthreads = tonumber(args[2])
    idx = tid + 1
    once = args[3] == "once"
    share = 0
    for i = tid + 1, #paths, nthreads do
        share = share + 1
    end
    answers = 0
    t_start = now_us()
    t_end = 0
end

function response(status, headers, body)
    answers = answers + 1
    if once and answers >= share then
        t_end = now_us()
        wrk.thread:stop()
    end
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
    local duration = summary.duration
    if #threads > 0 and threads[1]:get("once") then
        -- from the first thread's start to the last thread's last answer
        local t0, t1 = nil, 0
        for _, t in ipairs(threads) do
            local a, b = t:get("t_start"), t:get("t_end")
            if t0 == nil or a < t0 then
                t0 = a
            end
            if b == 0 then
                t1 = nil -- a thread did not finish: the whole run counts
                break
            end
            if b > t1 then
                t1 = b
            end
        end
        if t1 ~= nil then
            duration = t1 - t0
        end
    end
    io.write(string.format(
        "BENCH duration_us=%d requests=%d bytes=%d errors=%d status=%d p50_us=%d p99_us=%d\n",
        duration, summary.requests, summary.bytes,
        e.connect + e.read + e.write + e.timeout, e.status,
        latency:percentile(50), latency:percentile(99)))
end
