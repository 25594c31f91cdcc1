#!/usr/bin/env python3
"""IIIF tiles per second: mod_jpip's jpip-iiif handler against Debian's
iipimage-server (iipsrv with OpenJPEG) behind the same httpd, side by side
in one run.

    bench/iiif-bench.py [--work DIR] [--size 8192] [--duration 20]
                        [--conns 1,8] [--tiles 256,512]
                        [--sizes-cost 1024,2048,4096,8192] [--grey]
                        [--heap-retain SIZE]

The image: SIZE x SIZE RGB (grey with --grey), written as a PPM by this
script (a smooth picture with texture), encoded by opj_compress as an RPCL
JP2 with 7 resolutions, precincts 256/256/128 (the two finest resolutions
256, the next 128, halved at each coarser one, as opj_compress extends a
precinct list), 64x64 code-blocks and 4 quality layers (ratios 80, 40, 20,
10).

A deep-zoom session, as OpenSeadragon asks for it: the overview
(full/!512,512), then random full-resolution 256x256 tiles on the 256 grid
(x,y,256,256/256,/0/default.jpg), the same list for both servers. Each
connection is one keep-alive HTTP/1.1 client thread; the figure is
answers per second over DURATION seconds (200s only; a non-200 stops the
run). The same httpd (event MPM) serves /iiif (mod_jpip) and proxies
/iipsrv to iipsrv.fcgi over FastCGI (mod_proxy_fcgi), which the bench
starts itself with FILESYSTEM_PREFIX on the same archive.

--sizes-cost: the mean time of one full-resolution 256x256 tile (one
connection) on images of those sizes, mod_jpip only: the per-tile cost as
the image grows; with bench/render-cost built (make bench-iiif builds it),
the same tiles rendered in libcore alone, split into plan, decode and post.

Environment: BUILDDIR, SRCDIR, HTTPD, APXS, OPJ_COMPRESS, IIPSRV
(default /usr/lib/iipimage-server/iipsrv.fcgi). Python 3 standard library.
"""

import argparse
import http.client
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.environ.get("SRCDIR", os.path.dirname(HERE))
BUILDDIR = os.environ.get("BUILDDIR", SRCDIR)
sys.path.insert(0, os.path.join(SRCDIR, "tests", "integration"))
from harness import Httpd, free_port  # noqa: E402

HTTPD = os.environ.get("HTTPD", "/usr/sbin/apache2")
APXS = os.environ.get("APXS", "apxs")
OPJ_C = os.environ.get("OPJ_COMPRESS", "opj_compress")
IIPSRV = os.environ.get("IIPSRV", "/usr/lib/iipimage-server/iipsrv.fcgi")
RENDER_COST = os.path.join(BUILDDIR, "bench", "render-cost")
MODULE = os.environ.get("JPIP_MODULE", os.path.join(BUILDDIR, "mod_jpip", ".libs",
                                                    "mod_jpip.so"))


def make_image(work, size, nc=3):
    """The picture, SIZE x SIZE with nc components (3: RGB, 1: grey)."""
    path = os.path.join(work, "deepzoom-%d%s.jp2" % (size, "" if nc == 3 else "-grey"))
    if os.path.exists(path):
        return path
    ppm = os.path.join(work, "deepzoom-%d.%s" % (size, "ppm" if nc == 3 else "pgm"))
    # rows are slices of one long textured ramp, shifted per row: fast to
    # write, and compresses like a photograph rather than a flat field
    base = bytearray()
    for i in range(size * 3 + 3 * 4096):
        base.append((i * 7 // 3 + (i * i) % 97 + (i // 300) * 11) & 255)
    with open(ppm, "wb") as f:
        f.write(b"P%d\n%d %d\n255\n" % (6 if nc == 3 else 5, size, size))
        for y in range(size):
            s = (y * 3 * 5 + (y // 64) * 31) % (3 * 4096)
            f.write(base[s:s + size * nc])
    subprocess.run([OPJ_C, "-i", ppm, "-o", path, "-n", "7", "-p", "RPCL",
                    "-c", "[256,256],[256,256],[128,128]", "-b", "64,64",
                    "-r", "80,40,20,10"], check=True, capture_output=True)
    os.unlink(ppm)
    return path


def session_paths(prefix, ident, size, n, seed, tile=256):
    rnd = random.Random(seed)
    paths = ["%s/%s/full/!512,512/0/default.jpg" % (prefix, ident)]
    grid = size // tile
    for _ in range(n):
        x, y = rnd.randrange(grid) * tile, rnd.randrange(grid) * tile
        paths.append("%s/%s/%d,%d,%d,%d/%d,/0/default.jpg" % (prefix, ident, x, y, tile, tile,
                                                             tile))
    return paths


def load(port, paths, conns, duration):
    """Answers per second with `conns` keep-alive clients walking paths."""
    stop = time.time() + duration
    counts = [0] * conns
    lat = [[] for _ in range(conns)]
    errors = []

    def client(i):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        k = i
        while time.time() < stop and not errors:
            p = paths[k % len(paths)]
            k += conns
            t0 = time.time()
            try:
                c.request("GET", p)
                r = c.getresponse()
                r.read()
            except (OSError, http.client.HTTPException) as e:
                errors.append("%s: %s" % (p, e))
                break
            if r.status != 200:
                errors.append("%s: %d" % (p, r.status))
                break
            lat[i].append(time.time() - t0)
            counts[i] += 1
        c.close()
    t_start = time.time()
    ts = [threading.Thread(target=client, args=(i,)) for i in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    elapsed = time.time() - t_start
    all_lat = sorted(x for li in lat for x in li)
    med = all_lat[len(all_lat) // 2] * 1000 if all_lat else 0
    p90 = all_lat[int(len(all_lat) * 0.9)] * 1000 if all_lat else 0
    return {"tiles_per_s": sum(counts) / elapsed, "tiles": sum(counts), "median_ms": med,
            "p90_ms": p90, "errors": errors[:3]}


def start_iipsrv(archive, work):
    port = free_port()
    # no tile cache and no memcached: every answer is rendered, as
    # mod_jpip's are (it keeps no tile cache; mod_cache is what caches)
    env = dict(os.environ, FILESYSTEM_PREFIX=archive + "/", VERBOSITY="0", JPEG_QUALITY="90",
               MAX_IMAGE_CACHE_SIZE="0", MAX_CVT="5000", MEMCACHED_SERVERS="127.0.0.1:1",
               LOGFILE=os.path.join(work, "iipsrv.log"))
    proc = subprocess.Popen([IIPSRV, "--bind", "127.0.0.1:%d" % port, "--backlog", "1024"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("iipsrv did not start")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=None)
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--conns", default="1,8")
    ap.add_argument("--tiles", default="256", help="tile sizes, e.g. 256,512")
    ap.add_argument("--sizes-cost", default="")
    ap.add_argument("--no-iipsrv", action="store_true")
    ap.add_argument("--heap-retain", default=None,
                    help="JPIPIIIFHeapRetain for the run (default: the module's, 16M); "
                    "0 leaves the C library's policy")
    ap.add_argument("--grey", action="store_true",
                    help="one component instead of RGB (opj_compress needs about 4 bytes per "
                    "sample twice over: an untiled 32768^2 RGB picture does not fit 24 GB)")
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="jpip-iiif-bench-")
    os.makedirs(work, exist_ok=True)
    t0 = time.time()
    nc = 1 if args.grey else 3
    image = make_image(work, args.size, nc)
    print("image: %s (%d bytes, made in %.0f s)" % (os.path.basename(image),
                                                   os.path.getsize(image), time.time() - t0),
          flush=True)
    extra = [image]
    for s in [int(v) for v in args.sizes_cost.split(",") if v]:
        extra.append(make_image(work, s, nc))
    use_iip = not args.no_iipsrv and os.path.exists(IIPSRV)
    iip = None
    conf = """
<Location "/iiif">
    SetHandler jpip-iiif
    JPIPRoot "{archive}"
    JPIPIIIFMaxRenders 64
    Require all granted
</Location>
"""
    if args.heap_retain is not None:
        conf += "JPIPIIIFHeapRetain %s\n" % args.heap_retain
    # 64 threads a process (the harness's default is 8): room for 64
    # connections, or the event MPM closes kept-alive ones (AH00484)
    h = Httpd(HTTPD, APXS, MODULE, os.path.join(SRCDIR, "httpd-conf"), extra_conf=conf,
              extra_files=extra, servers=2, threads=64,
              extra_modules=[("proxy_module", "mod_proxy.so"),
                             ("proxy_fcgi_module", "mod_proxy_fcgi.so")])
    h.write_config()
    if use_iip:
        iip, iport = start_iipsrv(h.archive, work)
        with open(h.conf, "a") as f:
            f.write('\nProxyPass "/iipsrv" "fcgi://127.0.0.1:%d/"\n' % iport)
    h.start()
    results = {"image": os.path.basename(image), "size": args.size,
               "bytes": os.path.getsize(image), "runs": []}
    try:
        ident = os.path.basename(image)
        for tile in [int(t) for t in args.tiles.split(",")]:
            paths = session_paths("/iiif", ident, args.size, 4000, 1, tile)
            # iipsrv's IIIF syntax: ?IIIF={identifier}/{region}/...
            ipaths = [p.replace("/iiif/", "/iipsrv?IIIF=", 1) for p in paths]
            warm = [paths[0], paths[1]] + ([ipaths[0], ipaths[1]] if use_iip else [])
            for p in warm:
                st, _, body = h.get(p, timeout=300)
                if st != 200:
                    raise RuntimeError("%s: %d %s" % (p, st, body[:200]))
            for conns in [int(c) for c in args.conns.split(",")]:
                for name, plist in ([("mod_jpip", paths)] +
                                    ([("iipsrv", ipaths)] if use_iip else [])):
                    r = load(h.port, plist, conns, args.duration)
                    r.update({"server": name, "conns": conns, "tile": tile})
                    results["runs"].append(r)
                    print("%-9s %3d tile %2d conns: %7.1f tiles/s  median %6.1f ms  p90 %6.1f ms"
                          "  %s" % (name, tile, conns, r["tiles_per_s"], r["median_ms"],
                                    r["p90_ms"], "; ".join(r["errors"])), flush=True)
        cost = []
        for path in extra[1:]:
            s = int(os.path.basename(path).split("-")[1].split(".")[0])
            r = load(h.port, session_paths("/iiif", os.path.basename(path), s, 400, 2)[1:], 1,
                     min(args.duration, 10))
            c = {"size": s, "ms_per_tile": 1000.0 / r["tiles_per_s"]}
            print("per-tile cost %5d^2: %.2f ms" % (s, c["ms_per_tile"]), flush=True)
            if os.path.exists(RENDER_COST):
                # the same tiles in libcore alone: where the time goes
                rc = subprocess.run([RENDER_COST, path, "100", "256", "2"], capture_output=True,
                                    text=True)
                m = re.search(r"RENDERCOST (.*)", rc.stdout)
                if m:
                    c["render_cost"] = {k: float(v) for k, v in
                                        (kv.split("=") for kv in m.group(1).split())}
                    print("  libcore alone: " + m.group(1), flush=True)
            cost.append(c)
        results["cost"] = cost
        # a worker that died, or an error a render logged, shows here
        results["error_log"] = h.bad_log_lines()
        for line in results["error_log"][:10]:
            print("error log: " + line, flush=True)
    finally:
        h.stop()
        h.cleanup()
        if iip is not None:
            iip.terminate()
            try:
                iip.wait(timeout=10)
            except subprocess.TimeoutExpired:
                iip.kill()
    with open(os.path.join(work, "iiif-results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(json.dumps(results))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
