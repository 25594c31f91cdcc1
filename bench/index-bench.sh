#!/bin/sh
# Indexing throughput of libcore (through jpip-inspect), with and without
# PLT markers, next to the time `cat FILE >/dev/null` takes in the same run.
#
#   bench/index-bench.sh [WORKDIR]        (or `make bench-index`)
#
# Generates a synthetic RGB picture (samples/synth) of BENCH_SIZE x
# BENCH_SIZE pixels (default 8192) and encodes it twice with opj_compress:
# 7 resolutions (-n 7: 6 decomposition levels), 256x256 precincts (128x128 below
# the top two levels), 5 quality layers, RPCL, once with -PLT and once
# without. For each file: one `cat` to warm the page cache, then
# BENCH_RUNS (default 5) rounds of (jpip-inspect FILE; cat FILE >/dev/null),
# alternately; the medians are printed. jpip-inspect's JSON gives the index
# build time (build_ms, index only, file already open), the index size and
# the bytes it read; the wall time of the whole jpip-inspect process is
# printed too. Throughput is codestream megabytes (10^6) per second of
# build time. WORKDIR (default a temporary directory, removed at the end;
# kept when given) holds the ~1 GB of picture and codestreams; with
# BENCH_KEEP=1 an existing WORKDIR's codestreams are reused.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
builddir=${BUILDDIR:-$top}
inspect=${JPIP_INSPECT:-$builddir/tools/jpip-inspect}
synth=${SYNTH:-$builddir/samples/synth}
opj=${OPJ_COMPRESS:-opj_compress}
size=${BENCH_SIZE:-8192}
runs=${BENCH_RUNS:-5}
python=${PYTHON:-python3}

for p in "$inspect" "$synth"; do
    if [ ! -x "$p" ]; then
        echo "index-bench: $p not built (run make first)" >&2
        exit 1
    fi
done

if [ $# -ge 1 ]; then
    work=$1
    mkdir -p "$work"
    cleanup=:
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/jpip-bench.XXXXXX")
    cleanup="rm -rf $work"
fi
trap '$cleanup' EXIT

now_ns() { date +%s%N; }

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

json_field() { # FILE FIELD: a number from jpip-inspect's JSON
    "$python" -c 'import json,sys; d=json.load(open(sys.argv[1]))
f=sys.argv[2]
print(d["index"][f] if f in d["index"] else d[f])' "$1" "$2"
}

pic="$work/synth-$size.ppm"
if [ ! -f "$pic" ] || [ "${BENCH_KEEP:-0}" != 1 ]; then
    echo "index-bench: synthesising a ${size}x${size} RGB picture"
    "$synth" "$size" "$size" 3 "$pic"
fi

encode() { # OUT EXTRA...
    out=$1
    shift
    if [ -f "$out" ] && [ "${BENCH_KEEP:-0}" = 1 ]; then
        return 0
    fi
    echo "index-bench: encoding $(basename "$out")"
    t0=$(now_ns)
    "$opj" -i "$pic" -o "$out" -n 7 -r 160,80,40,20,10 -p RPCL \
        -c '[256,256],[256,256],[128,128]' "$@" >/dev/null
    echo "index-bench:   $(((($(now_ns) - t0) / 1000000))) ms"
}

encode "$work/noplt.j2k"
encode "$work/plt.j2k" -PLT

printf '\n%-10s %12s %8s %10s %10s %10s %10s %10s %10s %8s\n' file bytes runs \
    'build_ms' 'MB/s' 'wall_ms' 'cat_ms' 'cat_MB/s' 'index_B' 'index%'
for name in plt noplt; do
    f="$work/$name.j2k"
    bytes=$(wc -c <"$f")
    cat "$f" >/dev/null # warm the page cache
    : >"$work/build" && : >"$work/wall" && : >"$work/cat"
    i=0
    while [ $i -lt "$runs" ]; do
        t0=$(now_ns)
        "$inspect" "$f" >"$work/json"
        t1=$(now_ns)
        cat "$f" >/dev/null
        t2=$(now_ns)
        json_field "$work/json" build_ms >>"$work/build"
        echo $(((t1 - t0) / 1000)) >>"$work/wall"
        echo $(((t2 - t1) / 1000)) >>"$work/cat"
        i=$((i + 1))
    done
    ixbytes=$(json_field "$work/json" bytes)
    readb=$(json_field "$work/json" file_bytes_read)
    b=$(median <"$work/build")
    w=$(median <"$work/wall")
    c=$(median <"$work/cat")
    awk -v n="$name" -v bytes="$bytes" -v runs="$runs" -v b="$b" -v w="$w" -v c="$c" \
        -v ix="$ixbytes" 'BEGIN {
        printf "%-10s %12d %8d %10.2f %10.0f %10.2f %10.2f %10.0f %10d %7.3f%%\n",
            n, bytes, runs, b, bytes / 1e6 / (b / 1e3), w / 1e3, c / 1e3,
            bytes / 1e6 / (c / 1e6), ix, 100 * ix / bytes }'
    echo "           (index read $readb bytes of the file)"
done
