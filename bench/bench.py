#!/usr/bin/env python3
"""mod_jpip benchmarks (issue 6): view-window requests against a real httpd,
next to the same httpd serving the identical response bytes as static files.

    bench/bench.py [--work DIR] [--plots DIR] [--only PARTS]    (or `make bench`)

Parts (all by default, or a comma-separated --only list): images,
throughput, latency, coldstart, memory, efficiency, budget, scaling,
stores (sessions in shared memory next to sessions through redis). With
--only budget alone, only the two images it measures are made. Results go to
WORK/results.json and, as Markdown tables, to stdout; with --plots DIR the
PNG plots (gnuplot) are written there (docs/bench-throughput.png,
docs/bench-scaling.png).

Environment (the Makefile's bench target sets them): BUILDDIR (the build
tree), SRCDIR, HTTPD, APXS, OPJ_COMPRESS, OPJ_DECOMPRESS; BENCH_DURATION
(seconds per wrk run, default 5), BENCH_REPEAT (runs of each figure, median
taken, default 2), BENCH_SESSIONS (sessions per session run, default 1000),
BENCH_STORES (the stores part's backends, default "shm,redis").
BENCH_OLD_TREE (a built checkout of another commit: the stores part adds its
shm sessions, run by run next to this tree's).
Python 3 standard library only; needs wrk, curl and (for plots) gnuplot.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import http.client

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.environ.get("SRCDIR", os.path.dirname(HERE))
BUILDDIR = os.environ.get("BUILDDIR", SRCDIR)
sys.path.insert(0, os.path.join(SRCDIR, "tests", "integration"))
from harness import Httpd  # noqa: E402
import jpp  # noqa: E402

HTTPD = os.environ.get("HTTPD", "/usr/sbin/apache2")
APXS = os.environ.get("APXS", "apxs")
OPJ_C = os.environ.get("OPJ_COMPRESS", "opj_compress")
OPJ_D = os.environ.get("OPJ_DECOMPRESS", "opj_decompress")
MODULE = os.environ.get("JPIP_MODULE", os.path.join(BUILDDIR, "mod_jpip", ".libs", "mod_jpip.so"))
INSPECT = os.path.join(BUILDDIR, "tools", "jpip-inspect")
SYNTH = os.path.join(BUILDDIR, "samples", "synth")
DURATION = float(os.environ.get("BENCH_DURATION", "5"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "2"))
NSESS = int(os.environ.get("BENCH_SESSIONS", "1000"))
STORES = os.environ.get("BENCH_STORES", "shm,redis").split(",")
CONCURRENCY = [int(c) for c in os.environ.get("BENCH_CONCURRENCY", "1,8,64").split(",")]
IMAGES = os.environ.get("BENCH_IMAGES", "img8k-plt,img8k-noplt,t32k-plt,t32k-noplt").split(",")
VIEW = (1024, 768)  # the viewport of the traces
ENC = ["-n", "7", "-r", "160,80,40,20,10", "-p", "RPCL", "-c", "[256,256],[256,256],[128,128]"]

RESULTS = {}


def log(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


def need_tools():
    missing = [t for t in ("wrk", "curl") if shutil.which(t) is None]
    for p in (MODULE, INSPECT, SYNTH):
        if not os.path.exists(p):
            missing.append(p + " (run make first)")
    for t in (OPJ_C, OPJ_D):
        if shutil.which(t) is None:
            missing.append(t)
    if missing:
        log("missing: " + ", ".join(missing) +
            " (apt-get install wrk curl libopenjp2-tools; gnuplot-nox for plots)")
        sys.exit(1)
    if shutil.which("gnuplot") is None:
        log("gnuplot not found: no plots (apt-get install gnuplot-nox)")


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) * 1024
    return {"nproc": os.cpu_count(), "cpu": model, "memory_gib": round(mem / 2**30, 1),
            "kernel": os.uname().release,
            "httpd": subprocess.run([HTTPD, "-v"], capture_output=True,
                                    text=True).stdout.splitlines()[0]}


# ------------------------------------------------------------------ images

def drop_caches():
    try:
        subprocess.run(["sync"], check=True)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def make_images(work, only=None):
    """The test files, reused when present (only: the names wanted, None
    for all). Returns {name: path}."""
    arch = os.path.join(work, "archive")
    os.makedirs(arch, exist_ok=True)
    os.chmod(work, 0o755)
    os.chmod(arch, 0o755)
    out = {}

    def pic(size):
        p = os.path.join(work, "pic%d.ppm" % size)
        if not os.path.exists(p):
            subprocess.run([SYNTH, str(size), str(size), "3", p], check=True)
        return p

    def encode(name, size, plt):
        p = os.path.join(work, name)
        if not os.path.exists(p):
            log("encoding %s" % name)
            t0 = time.time()
            subprocess.run([OPJ_C, "-i", pic(size), "-o", p + ".tmp.j2k"] + ENC +
                           (["-PLT"] if plt else []), check=True, stdout=subprocess.DEVNULL)
            os.rename(p + ".tmp.j2k", p)
            log("  %.0f s" % (time.time() - t0))
        return p

    def tiled(name, tile, across, down):
        p = os.path.join(arch, name)
        if not os.path.exists(p):
            subprocess.run([sys.executable, os.path.join(HERE, "synth-tiled.py"), tile,
                            str(across), str(down), p], check=True)
            os.chmod(p, 0o644)
        out[name[:-4]] = p

    def place(name, src):
        p = os.path.join(arch, name)
        if not os.path.exists(p):
            shutil.copyfile(src, p)
            os.chmod(p, 0o644)
        out[name[:-4]] = p

    def wanted(name):
        return only is None or name in only

    for plt in (True, False):
        sfx = "plt" if plt else "noplt"
        if wanted("img8k-" + sfx):
            place("img8k-%s.j2k" % sfx, encode("img8k-%s.j2k" % sfx, 8192, plt))
        if wanted("t32k-" + sfx) or wanted("big-" + sfx):
            t4 = encode("tile4k-%s.j2k" % sfx, 4096, plt)
        if wanted("t32k-" + sfx):
            tiled("t32k-%s.j2k" % sfx, t4, 8, 8)
        if wanted("big-" + sfx):
            tiled("big-%s.j2k" % sfx, t4, 14, 14)
    if any(wanted("s%dk" % n) for n in (1, 4, 8, 16, 32)):
        t1 = encode("tile1k-plt.j2k", 1024, True)
        for n in (1, 4, 8, 16, 32):
            tiled("s%dk.j2k" % n, t1, n, n)
    # the synthetic files must decode: a region at a reduced resolution
    for name in [n for n in ("t32k-plt", "big-noplt", "s32k") if n in out]:
        o = os.path.join(work, "check.ppm")
        r = subprocess.run([OPJ_D, "-i", out[name], "-o", o, "-r", "4", "-d",
                            "4000,4000,6000,5000"], capture_output=True, text=True)
        if r.returncode != 0 or not os.path.exists(o):
            log("%s does not decode: %s" % (name, r.stdout[-300:] + r.stderr[-300:]))
            sys.exit(1)
        os.remove(o)
    RESULTS["images"] = {k: os.path.getsize(v) for k, v in out.items()}
    return out


def geometry(path):
    s = json.loads(subprocess.run([INSPECT, path], capture_output=True, check=True).stdout)
    cs = s["codestreams"][0]
    return cs["width"], cs["height"], s


# ------------------------------------------------------------------ traces

def trace(w, h, vw=VIEW[0], vh=VIEW[1]):
    """A pan/zoom trace: zoom from the overview to full resolution towards
    a point of interest, two pans at every level, then a longer pan at full
    resolution. Returns query strings (fsiz, roff, rsiz)."""
    qs = []
    d = 0
    while -(-w >> d) > vw or -(-h >> d) > vh:
        d += 1
    cx, cy = 0.37, 0.41  # point of interest, as a fraction of the image
    for lev in range(d, -1, -1):
        fw, fh = -(-w >> lev), -(-h >> lev)
        steps = [(0, 0), (0.5, 0), (0.5, 0.5)] if lev < d else [(0, 0)]
        if lev == 0:
            steps += [(1.0 + 0.5 * i, 0.5) for i in range(6)] + [(3.5, 1.0), (3.5, 1.5)]
        for sx, sy in steps:
            ox = int(cx * fw - vw / 2 + sx * vw)
            oy = int(cy * fh - vh / 2 + sy * vh)
            ox = max(0, min(ox, fw - vw)) if fw > vw else 0
            oy = max(0, min(oy, fh - vh)) if fh > vh else 0
            qs.append("type=jpp-stream&fsiz=%d,%d&roff=%d,%d&rsiz=%d,%d"
                      % (fw, fh, ox, oy, min(vw, fw), min(vh, fh)))
    return qs


def typical(w, h):
    """The typical viewport request: full resolution, mid-image."""
    return ("type=jpp-stream&fsiz=%d,%d&roff=%d,%d&rsiz=%d,%d"
            % (w, h, max(0, w // 2 - VIEW[0] // 2), max(0, h // 2 - VIEW[1] // 2),
               min(VIEW[0], w), min(VIEW[1], h)))


# ------------------------------------------------------------------ server

class Server:
    def __init__(self, work, store=None, tree=None):
        """store: None (shm sessions), or the port of a redis for
        JPIPSessionStore socache:redis. tree: another built source tree,
        whose module and httpd-conf/ to use (default: this one's)."""
        extra = """
MaxKeepAliveRequests 0
KeepAliveTimeout 30
JPIPSessions %d
JPIPSessionMemory %dM
JPIPMaxSessionsPerClient 0
<Location "/b">
    SetHandler jpip
    JPIPRoot "%s"
    Require all granted
</Location>
""" % (NSESS + 24, (NSESS + 24) // 4, os.path.join(work, "archive"))
        modules = []
        if store is not None:
            extra += ("JPIPSessionStore socache:redis 127.0.0.1:%d\n"
                      "LogLevel socache_redis:alert\n" % store)
            modules = [("socache_redis_module", "mod_socache_redis.so")]
        self.archive = os.path.join(work, "archive")
        self.h = Httpd(HTTPD, APXS,
                       os.path.join(tree, "mod_jpip", ".libs", "mod_jpip.so") if tree else MODULE,
                       os.path.join(tree or SRCDIR, "httpd-conf"),
                       extra_conf=extra, servers=2, extra_modules=modules)
        conf = self.h.write_config()
        with open(conf) as f:
            text = f.read()
        # two processes of 64 threads: room for 64 connections each way
        text = re.sub(r"StartServers \d+\n(.|\n)*?MaxRequestWorkers \d+\n",
                      "StartServers 2\nServerLimit 2\nThreadsPerChild 64\nThreadLimit 64\n"
                      "MinSpareThreads 64\nMaxSpareThreads 128\nMaxRequestWorkers 128\n", text)
        text = text.replace("LogLevel warn jpip:info", "LogLevel warn")
        with open(conf, "w") as f:
            f.write(text)
        self.h.start()
        self.port = self.h.port
        self.base = "http://127.0.0.1:%d" % self.port
        self.static = os.path.join(self.h.docroot, "s")
        os.makedirs(self.static, exist_ok=True)
        os.chmod(self.static, 0o755)
        self.conn = None

    def get(self, path):
        """GET on a kept-alive connection: (status, headers, body)."""
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            try:
                self.conn.request("GET", path)
                r = self.conn.getresponse()
                body = r.read()
                return r.status, {k.lower(): v for k, v in r.getheaders()}, body
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise

    def save_static(self, rel, body):
        p = os.path.join(self.static, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        for d in (os.path.dirname(p),):
            os.chmod(d, 0o755)
        with open(p, "wb") as f:
            f.write(body)
        os.chmod(p, 0o644)
        return "/s/" + rel

    def new_session(self, name):
        st, hd, body = self.get("/b/%s?cnew=http&type=jpp-stream&tid=0" % name)
        if st != 200 or "jpip-cnew" not in hd:
            raise RuntimeError("cnew failed: %d %r" % (st, body[:100]))
        cid = re.search(r"cid=([^,]+)", hd["jpip-cnew"]).group(1)
        return cid, body

    def status(self):
        return json.loads(self.get("/jpip-status?json")[2])

    def ready(self, name, timeout=600):
        """Ask for name until its rendition is in the index cache, then
        give every process the time to map it (it looks once a second):
        the timed runs measure the steady state, not the build."""
        real = os.path.realpath(os.path.join(self.archive, name))
        f = os.path.join(self.h.root, "run", "jpip-index",
                         hashlib.sha1(real.encode()).hexdigest() + ".jprd")
        t0 = time.time()
        while not os.path.exists(f):
            if time.time() - t0 > timeout:
                raise RuntimeError("%s: no rendition after %d s" % (name, timeout))
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            c.request("GET", "/b/%s?type=jpp-stream&fsiz=64,64" % name)
            c.getresponse().read()
            c.close()
            time.sleep(0.1)
        time.sleep(1.5)
        for _ in range(32):
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            c.request("GET", "/b/%s?type=jpp-stream&fsiz=64,64" % name)
            c.getresponse().read()
            c.close()

    def children_mem(self):
        rss = pss = 0
        for pid in self.h.children():
            try:
                with open("/proc/%d/status" % pid) as f:
                    rss += int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) * 1024
                with open("/proc/%d/smaps_rollup" % pid) as f:
                    pss += int(re.search(r"^Pss:\s+(\d+)", f.read(), re.M).group(1)) * 1024
            except (OSError, AttributeError):
                pass
        return rss, pss

    def stop(self):
        if self.conn:
            self.conn.close()
        self.h.stop()
        self.h.cleanup()


def wrk(srv, paths, conc, duration, listfile, once=False):
    """wrk over the paths for duration seconds; once: walk the list exactly
    once (duration is then a bound)."""
    with open(listfile, "w") as f:
        f.write("\n".join(paths) + "\n")
    threads = min(2, conc)
    r = subprocess.run(["wrk", "-t", str(threads), "-c", str(conc), "-d", "%ds" % max(1, int(round(duration))),
                        "--timeout", "30s", "-s", os.path.join(HERE, "paths.lua"), srv.base,
                        "--", listfile, str(threads)] + (["once"] if once else []),
                       capture_output=True, text=True)
    m = re.search(r"BENCH (.*)", r.stdout)
    if not m:
        raise RuntimeError("wrk: " + r.stdout + r.stderr)
    v = {k: int(x) for k, x in (kv.split("=") for kv in m.group(1).split())}
    sec = v["duration_us"] / 1e6
    v["rps"] = v["requests"] / sec
    v["mbps"] = v["bytes"] / sec / 1e6
    if v["errors"] or v["status"]:
        log("wrk: %d errors, %d non-2xx answers" % (v["errors"], v["status"]))
    return v


def check_eor(body, what):
    msgs, eor, trail = jpp.parse(body)
    if eor not in (1, 2):
        raise RuntimeError("%s ended with EOR %r" % (what, eor))
    return msgs


# ------------------------------------------------------------- throughput

def capture(srv, name, qs, tag):
    """Stateless answers of the trace saved as static files; and one
    session's answers (cnew first, then each step) likewise."""
    stateless, sess = [], []
    sl_bytes = ss_bytes = 0
    srv.ready(name)
    for i, q in enumerate(qs):
        st, _, body = srv.get("/b/%s?%s" % (name, q))
        if st != 200:
            raise RuntimeError("%s %s: %d" % (name, q, st))
        check_eor(body, "stateless %s" % q)
        sl_bytes += len(body)
        stateless.append(("/b/%s?%s" % (name, q), srv.save_static("%s/sl%02d.jpp" % (tag, i),
                                                                  body), body))
    cid, opening = srv.new_session(name)
    for i, q in enumerate(qs):
        st, _, body = srv.get("/b?cid=%s&%s" % (cid, q))
        check_eor(body, "session %s" % q)
        ss_bytes += len(body)
        sess.append(("?" + q, srv.save_static("%s/ss%02d.jpp" % (tag, i), body), body))
    return stateless, sess, opening


def session_list(srv, name, sess, n):
    """n fresh sessions (opened with a header-only cnew); their trace
    requests ordered step by step across sessions."""
    cids = [srv.new_session(name)[0] for _ in range(n)]
    jp, stc = [], []
    for q, spath, _ in sess:
        for cid in cids:
            jp.append("/b?cid=%s&%s" % (cid, q[1:]))
            stc.append(spath)
    return jp, stc


def median_runs(fn, n):
    runs = [fn() for _ in range(n)]
    runs.sort(key=lambda v: v["rps"])
    return runs[len(runs) // 2]


def throughput(srv, images, work):
    res = {}
    lst = os.path.join(work, "paths.txt")
    for name in IMAGES:
        w, h, _ = geometry(images[name])
        qs = trace(w, h)
        stateless, sess, _ = capture(srv, name + ".j2k", qs, name)
        r = res[name] = {"trace_requests": len(qs),
                         "stateless_bytes": sum(len(b) for _, _, b in stateless),
                         "session_bytes": sum(len(b) for _, _, b in sess), "runs": {}}
        log("%s: %d requests, stateless %.1f MB, session %.1f MB per trace"
            % (name, len(qs), r["stateless_bytes"] / 1e6, r["session_bytes"] / 1e6))
        for c in CONCURRENCY:
            # stateless and static alternate, REPEAT times each
            jr, sr = [], []
            for _ in range(REPEAT):
                jr.append(wrk(srv, [p for p, _, _ in stateless], c, DURATION, lst))
                sr.append(wrk(srv, [s for _, s, _ in stateless], c, DURATION, lst))
            jr.sort(key=lambda v: v["rps"])
            sr.sort(key=lambda v: v["rps"])
            j, s = jr[len(jr) // 2], sr[len(sr) // 2]
            # sessions: each request a new window for its session, and
            # the whole trace of every session walked once (so all steps
            # weigh as in the trace): as many sessions as take about
            # DURATION at the stateless rate
            nsess = int(max(2 * c, min(NSESS, round(DURATION * j["rps"] / len(sess)))))
            sj, ssr = [], []
            for _ in range(REPEAT):
                jp, stc = session_list(srv, name + ".j2k", sess, nsess)
                # wrk runs for its whole -d whatever the script does: a
                # bound of 3x the time at the stateless rate
                bound = 3.0 * len(jp) / max(j["rps"], 1.0) + 2
                v = wrk(srv, jp, c, bound, lst, once=True)
                if v["requests"] < len(jp):
                    log("session list not finished (%d < %d)" % (v["requests"], len(jp)))
                sj.append(v)
                ssr.append(wrk(srv, stc, c, bound, lst, once=True))
            sj.sort(key=lambda v: v["rps"])
            ssr.sort(key=lambda v: v["rps"])
            sjm, ssm = sj[len(sj) // 2], ssr[len(ssr) // 2]
            r["runs"][c] = {"stateless": j, "static": s, "session": sjm, "static_session": ssm,
                            "sessions": nsess,
                            "ratio_stateless": j["rps"] / s["rps"],
                            "ratio_session": sjm["rps"] / ssm["rps"]}
            log("%s c=%d: stateless %.0f/s static %.0f/s (%.2f); session %.0f/s static %.0f/s"
                " (%.2f)" % (name, c, j["rps"], s["rps"], j["rps"] / s["rps"], sjm["rps"],
                             ssm["rps"], sjm["rps"] / ssm["rps"]))
    RESULTS["throughput"] = res


# -------------------------------------------------------- session stores

class Redis:
    """A redis-server of its own (docs/cluster.md settings) on a free port."""

    def __init__(self, work):
        import socket
        with socket.socket() as so:
            so.bind(("127.0.0.1", 0))
            self.port = so.getsockname()[1]
        self.dir = tempfile.mkdtemp(prefix="redis-", dir=work)
        conf = os.path.join(self.dir, "redis.conf")
        with open(conf, "w") as f:
            f.write("bind 127.0.0.1\nport %d\ndir %s\nsave \"\"\nappendonly no\n"
                    "maxmemory 1gb\nmaxmemory-policy volatile-lru\n" % (self.port, self.dir))
        self.proc = subprocess.Popen(["redis-server", conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as so:
                    so.sendall(b"PING\r\n")
                    if so.recv(10).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("redis-server did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def session_rps(srv, name, sess, c, nsess, lst):
    """The throughput part's session method: nsess fresh sessions walk
    the trace once, step by step across sessions; median of REPEAT."""
    runs = []
    for _ in range(REPEAT):
        jp, _ = session_list(srv, name, sess, nsess)
        runs.append(wrk(srv, jp, c, 3.0 * DURATION + 10, lst, once=True))
    runs.sort(key=lambda v: v["rps"])
    return runs[len(runs) // 2]


def stores(images, work):
    """Sessions in shared memory and through redis (socache), same trace,
    same method. All servers run at once and take turns, run by run, so
    that the ratios compare runs made under the same load. BENCH_OLD_TREE
    (another built checkout, e.g. an older commit) adds an "old" shm row."""
    kinds = [k for k in STORES if k != "redis" or shutil.which("redis-server")]
    if "redis" in STORES and "redis" not in kinds:
        log("stores: no redis-server, redis skipped")
    old = os.environ.get("BENCH_OLD_TREE")
    if old:
        kinds.append("old")
    res = {}
    lst = os.path.join(work, "paths.txt")
    redis = None
    srvs = {}
    try:
        for kind in kinds:
            if kind == "redis":
                redis = Redis(work)
            srvs[kind] = Server(work, store=redis.port if kind == "redis" else None,
                                tree=old if kind == "old" else None)
        for name in IMAGES:
            w, h, _ = geometry(images[name])
            qs = trace(w, h)
            sess = {k: capture(s, name + ".j2k", qs, name)[1] for k, s in srvs.items()}
            for c in CONCURRENCY:
                nsess = int(max(2 * c, min(NSESS, 200)))
                runs = {k: [] for k in kinds}
                for _ in range(REPEAT):
                    for k in kinds:
                        jp, _ = session_list(srvs[k], name + ".j2k", sess[k], nsess)
                        runs[k].append(wrk(srvs[k], jp, c, 3.0 * DURATION + 10, lst, once=True))
                for k in kinds:
                    rr = sorted(runs[k], key=lambda v: v["rps"])
                    v = dict(rr[len(rr) // 2])
                    v["all_rps"] = [x["rps"] for x in runs[k]]
                    res.setdefault(name, {}).setdefault(str(c), {})[k] = v
                    log("stores %s %s c=%d: %.0f session requests/s (runs %s)"
                        % (k, name, c, v["rps"], " ".join("%.0f" % x for x in v["all_rps"])))
                # ratios run by run (the runs of one round share the load)
                if "shm" in runs:
                    for k in kinds:
                        if k != "shm":
                            rat = sorted(a["rps"] / b["rps"] for a, b in zip(runs[k], runs["shm"]))
                            res[name][str(c)][k + "_per_shm"] = rat
                            log("stores %s/shm %s c=%d: median %.2f (runs %s)"
                                % (k, name, c, rat[len(rat) // 2],
                                   " ".join("%.2f" % x for x in rat)))
    finally:
        for s in srvs.values():
            s.stop()
        if redis:
            redis.stop()
    RESULTS["stores"] = res


# ---------------------------------------------------------------- latency

def curl_times(srv, paths):
    """(ttfb, total) in seconds for each path, one kept-alive connection."""
    cfg = tempfile.NamedTemporaryFile("w", suffix=".curl", delete=False)
    for p in paths:
        cfg.write('url = "%s%s"\noutput = "/dev/null"\n' % (srv.base, p))
    cfg.close()
    r = subprocess.run(["curl", "-s", "-K", cfg.name, "-w",
                        "%{http_code} %{time_starttransfer} %{time_total}\\n"],
                       capture_output=True, text=True)
    os.unlink(cfg.name)
    out = []
    for line in r.stdout.split("\n"):
        f = line.split()
        if len(f) == 3 and f[0] == "200":
            out.append((float(f[1]), float(f[2])))
    return out


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def latency(srv, images, n=300):
    res = {}
    for name in ("img8k-plt", "t32k-plt"):
        w, h, _ = geometry(images[name])
        q = typical(w, h)
        st, _, body = srv.get("/b/%s.j2k?%s" % (name, q))
        spath = srv.save_static("%s/typical.jpp" % name, body)
        cids = [srv.new_session(name + ".j2k")[0] for _ in range(n)]
        jt, stt, sst = [], [], []
        for rnd in range(3):  # alternate: same machine state for all three
            jt += curl_times(srv, ["/b/%s.j2k?%s" % (name, q)] * (n // 3))
            stt += curl_times(srv, [spath] * (n // 3))
            sst += curl_times(srv, ["/b?cid=%s&%s" % (c, q)
                                    for c in cids[rnd * (n // 3):(rnd + 1) * (n // 3)]])
        r = res[name] = {"bytes": len(body), "query": q}
        for k, v in (("stateless", jt), ("static", stt), ("session", sst)):
            r[k] = {"ttfb_p50_ms": 1e3 * pct([a for a, _ in v], 50),
                    "ttfb_p99_ms": 1e3 * pct([a for a, _ in v], 99),
                    "ttlb_p50_ms": 1e3 * pct([b for _, b in v], 50),
                    "ttlb_p99_ms": 1e3 * pct([b for _, b in v], 99), "n": len(v)}
        log("%s latency: %s" % (name, json.dumps(r)))
    RESULTS["latency"] = res


# -------------------------------------------------------------- cold start

def cold_start(srv, images, runs=3):
    res = {"drop_caches": drop_caches()}
    for name in ("big-plt", "big-noplt"):
        path = images[name]
        w, h, _ = geometry(path)
        q = typical(w, h)
        cat, ttfb_c, total_c, ttfb_w = [], [], [], []
        for _ in range(runs):
            dropped = drop_caches()
            t0 = time.time()
            subprocess.run("cat '%s' >/dev/null" % path, shell=True, check=True)
            cat.append(time.time() - t0)
            os.utime(path)  # a new (size, mtime): the index is built again
            if dropped:
                drop_caches()
            t = curl_times(srv, ["/b/%s.j2k?%s" % (name, q)])
            ttfb_c.append(t[0][0])
            total_c.append(t[0][1])
            # the same, file in the page cache
            subprocess.run("cat '%s' >/dev/null" % path, shell=True, check=True)
            os.utime(path)
            ttfb_w.append(curl_times(srv, ["/b/%s.j2k?%s" % (name, q)])[0][0])
        res[name] = {"bytes": os.path.getsize(path), "cat_s": statistics.median(cat),
                     "first_ttfb_s": statistics.median(ttfb_c),
                     "first_total_s": statistics.median(total_c),
                     "warm_first_ttfb_s": statistics.median(ttfb_w),
                     "cold": res["drop_caches"]}
        r = res[name]
        r["ratio_to_cat"] = r["first_ttfb_s"] / r["cat_s"]
        log("%s cold start: %s" % (name, json.dumps(r)))
    RESULTS["coldstart"] = res


# ------------------------------------------------------ memory, efficiency

def run_sessions_to_end(srv, name, sess, n, conc=8):
    """n new sessions each run the whole trace (curl, conc at a time)."""
    cids = [srv.new_session(name)[0] for _ in range(n)]
    procs = []
    cfgs = []
    for k in range(conc):
        cfg = tempfile.NamedTemporaryFile("w", suffix=".curl", delete=False)
        for cid in cids[k::conc]:
            for q, _, _ in sess:
                cfg.write('url = "%s/b?cid=%s&%s"\noutput = "/dev/null"\n' % (srv.base, cid, q[1:]))
        cfg.close()
        cfgs.append(cfg.name)
        procs.append(subprocess.Popen(["curl", "-s", "-K", cfg.name], stdout=subprocess.DEVNULL))
    for p in procs:
        p.wait()
    for c in cfgs:
        os.unlink(c)


def memory(images, work):
    res = {}
    for name in ("img8k-plt", "t32k-plt"):
        srv = Server(work)  # a fresh server: an empty store
        try:
            w, h, _ = geometry(images[name])
            qs = trace(w, h)
            _, sess, _ = capture(srv, name + ".j2k", qs, name)
            before = srv.status()
            rss0, pss0 = srv.children_mem()
            t0 = time.time()
            run_sessions_to_end(srv, name + ".j2k", sess, NSESS)
            el = time.time() - t0
            after = srv.status()
            rss1, pss1 = srv.children_mem()
            viewed = sum(len(b) for _, _, b in sess)
            res[name] = {"sessions": after["sessions"], "model_bytes": after["model_bytes_used"],
                         "model_bytes_per_session": after["model_bytes_used"] /
                         max(1, after["sessions"]),
                         "shared_memory_bytes": after["shared_memory_bytes"],
                         "rss_before": rss0, "rss_after": rss1, "pss_before": pss0,
                         "pss_after": pss1, "viewed_bytes_per_session": viewed,
                         "requests": after["requests"] - before["requests"], "seconds": el}
            log("%s memory: %s" % (name, json.dumps(res[name])))
        finally:
            srv.stop()
    RESULTS["memory"] = res


def bins_of(body):
    msgs, _, _ = jpp.parse(body)
    out = {}
    cls = 0
    for m in msgs:
        k = (m.cls & ~1, m.csn, m.id)
        out[k] = max(out.get(k, 0), m.off + m.len)
    return out


def efficiency(srv, images):
    res = {}
    for name in ("img8k-plt", "t32k-plt"):
        w, h, s = geometry(images[name])
        qs = trace(w, h)
        stateless, sess, opening = capture(srv, name + ".j2k", qs, name + "-eff")
        need = {}
        for _, _, body in stateless:  # each stateless answer: exactly its window's bins
            for k, v in bins_of(body).items():
                need[k] = max(need.get(k, 0), v)
        need_bytes = sum(need.values())
        sent = len(opening) + sum(len(b) for _, _, b in sess)
        sl = sum(len(b) for _, _, b in stateless)
        res[name] = {"needed_bin_bytes": need_bytes, "bins": len(need), "session_bytes": sent,
                     "stateless_bytes": sl, "session_ratio": sent / need_bytes,
                     "stateless_ratio": sl / need_bytes}
        log("%s efficiency: %s" % (name, json.dumps(res[name])))
    RESULTS["efficiency"] = res


def precinct_lengths(path):
    """In-class id -> length of every precinct data-bin of codestream 0,
    from jpip-inspect --bins."""
    out = {}
    r = subprocess.run([INSPECT, "--bins", path], capture_output=True, check=True)
    for line in r.stdout.decode().splitlines():
        if line.startswith("precinct"):
            kv = dict(x.split("=", 1) for x in line.split()[1:])
            if kv["csn"] == "0":
                out[int(kv["id"])] = int(kv["length"])
    return out


def window_of(cs, q):
    """(d, region) of a trace query (fsiz an exact frame, roff, rsiz)."""
    f = dict(kv.split("=", 1) for kv in q.split("&"))
    fx, fy = (int(v) for v in f["fsiz"].split(","))
    ox, oy = (int(v) for v in f.get("roff", "0,0").split(","))
    sx, sy = (int(v) for v in f.get("rsiz", "%d,%d" % (fx, fy)).split(","))
    d = min(e for e in range(33) if cs.frame(e)[0] <= fx and cs.frame(e)[1] <= fy)
    return d, cs.region(d, ox, oy, sx, sy)


def budget(srv, images):
    """The byte budget of a view: for each window of the pan/zoom trace,
    asked statelessly, the bytes of the answer against the bytes of the
    precincts whose own samples meet the window, and against those the
    inverse wavelet transform of the window reads (both from the
    codestream's headers by tests/integration/j2kgeom.py, which knows
    nothing of mod_jpip, and the bins' lengths from jpip-inspect)."""
    import j2kgeom  # noqa: E402 - tests/integration is on the path
    res = {}
    for name in ("img8k-plt", "t32k-plt"):
        path = images[name]
        w, h, _ = geometry(path)
        cs = j2kgeom.Codestream(path=path)
        oracle = j2kgeom.Oracle(cs)
        lengths = precinct_lengths(path)
        comps = list(range(cs.csiz))
        sent = meet = need = 0
        ratios = []
        for q in trace(w, h):
            st, _, body = srv.get("/b/%s.j2k?%s" % (name, q))
            if st != 200:
                raise RuntimeError("%s %s: %d" % (name, q, st))
            check_eor(body, q)
            d, rg = window_of(cs, q)
            n, _ = oracle.bounds(d, rg, comps)
            m = sum(lengths[i] for i in oracle.meeting(d, rg, comps))
            sent += len(body)
            meet += m
            need += sum(lengths[i] for i in n)
            ratios.append(len(body) / m)
        ratios.sort()
        res[name] = {"windows": len(ratios), "sent_bytes": sent, "meeting_bytes": meet,
                     "needed_bytes": need, "ratio": sent / meet, "ratio_needed": sent / need,
                     "median": ratios[len(ratios) // 2], "max": ratios[-1]}
        log("%s budget: %s" % (name, json.dumps(res[name])))
    RESULTS["budget"] = res


# ----------------------------------------------------------------- scaling

def plan_cost(path, queries, iters):
    exe = os.path.join(BUILDDIR, "bench", "plan-cost")
    if not os.path.exists(exe):
        return None
    r = subprocess.run([exe, path, str(iters)] + queries, capture_output=True, text=True)
    m = re.search(r"PLANCOST (.*)", r.stdout)
    if not m:
        log("plan-cost: " + r.stderr)
        return None
    return {k: float(x) for k, x in (kv.split("=") for kv in m.group(1).split())}


def callgrind_ir(path, queries, iters=3):
    exe = os.path.join(BUILDDIR, "bench", "plan-cost")
    if shutil.which("valgrind") is None or not os.path.exists(exe):
        return None
    out = tempfile.mktemp(prefix="cg.")
    subprocess.run(["valgrind", "--tool=callgrind", "--toggle-collect=run_requests",
                    "--callgrind-out-file=" + out, exe, path, str(iters)] + queries,
                   capture_output=True)
    ir = None
    try:
        with open(out) as f:
            for line in f:
                if line.startswith("summary:") or line.startswith("totals:"):
                    ir = int(line.split()[1])
        os.unlink(out)
    except OSError:
        return None
    return ir / (iters * len(queries)) if ir else None


def scaling(srv, images, work):
    res = {}
    lst = os.path.join(work, "paths.txt")
    for n in (1, 4, 8, 16, 32):
        name = "s%dk" % n
        path = images[name]
        w, h, s = geometry(path)
        # a fixed viewport (512 x 384 at full resolution) at the same place
        # in the tile grid whatever the image size: identical bytes
        qs = ["type=jpp-stream&fsiz=%d,%d&roff=%d,%d&rsiz=512,384" % (w, h, x, y)
              for x, y in ((0, 0), (256, 192), (512, 384), (384, 512), (512, 0), (0, 640))]
        over = "type=jpp-stream&fsiz=%d,%d&rsiz=1024,768" % (VIEW[0], VIEW[1])
        paths, statics = [], []
        for i, q in enumerate(qs):
            st, _, body = srv.get("/b/%s.j2k?%s" % (name, q))
            check_eor(body, q)
            paths.append("/b/%s.j2k?%s" % (name, q))
            statics.append(srv.save_static("%s/v%d.jpp" % (name, i), body))
        vbytes = statistics.mean(os.path.getsize(os.path.join(srv.static, p[3:]))
                                 for p in statics)
        # cold start on this size (file cached): first request after a change
        os.utime(path)
        first = curl_times(srv, [paths[0]])[0][0]
        srv.ready(name + ".j2k")  # the changed file gets a new rendition
        jr, sr = [], []
        for _ in range(REPEAT):
            jr.append(wrk(srv, paths, 8, DURATION, lst))
            sr.append(wrk(srv, statics, 8, DURATION, lst))
        j = sorted(jr, key=lambda v: v["rps"])[len(jr) // 2]
        st_ = sorted(sr, key=lambda v: v["rps"])[len(sr) // 2]
        lat = curl_times(srv, paths * 20)
        slat = curl_times(srv, statics * 20)
        pc = plan_cost(path, qs, 300)
        ir = callgrind_ir(path, qs)
        ov = plan_cost(path, [over], 30)
        res[name] = {"width": w, "tiles": s["codestreams"][0]["tiles"],
                     "file_bytes": os.path.getsize(path), "index_bytes": s["index"]["bytes"],
                     "view_bytes": vbytes, "rps": j["rps"], "static_rps": st_["rps"],
                     "ratio": j["rps"] / st_["rps"],
                     "ttfb_p50_ms": 1e3 * pct([a for a, _ in lat], 50),
                     "static_ttfb_p50_ms": 1e3 * pct([a for a, _ in slat], 50),
                     "first_request_ms": 1e3 * first,
                     "plan_ns": pc and pc["ns_per_request"], "plan_ir": ir,
                     "overview_ns": ov and ov["ns_per_request"],
                     "overview_bytes": ov and ov["bytes_per_request"]}
        log("%s scaling: %s" % (name, json.dumps(res[name])))
    RESULTS["scaling"] = res


# ------------------------------------------------------------------ report

def report():
    out = []
    m = RESULTS.get("machine", {})
    out.append("Machine: %s x %s, %s GiB, Linux %s, %s" % (m.get("nproc"), m.get("cpu"),
                                                          m.get("memory_gib"), m.get("kernel"),
                                                          m.get("httpd")))
    if "throughput" in RESULTS:
        out.append("\n### Throughput (requests/s, MB/s; ratio = JPIP / static)\n")
        out.append("| image | c | stateless r/s | MB/s | static r/s | MB/s | ratio |"
                   " session r/s | MB/s | static r/s | MB/s | ratio |")
        out.append("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
        for name, r in RESULTS["throughput"].items():
            for c, v in sorted(r["runs"].items(), key=lambda kv: int(kv[0])):
                out.append("| %s | %s | %.0f | %.0f | %.0f | %.0f | **%.2f** | %.0f | %.0f | %.0f |"
                           " %.0f | **%.2f** |"
                           % (name, c, v["stateless"]["rps"], v["stateless"]["mbps"],
                              v["static"]["rps"], v["static"]["mbps"], v["ratio_stateless"],
                              v["session"]["rps"], v["session"]["mbps"],
                              v["static_session"]["rps"], v["static_session"]["mbps"],
                              v["ratio_session"]))
    if "stores" in RESULTS:
        out.append("\n### Sessions by store (session requests/s, median of the runs; a ratio"
                   " is the median of run-by-run ratios, each run next to a shm run)\n")
        out.append("| image | c | shm r/s | redis r/s | redis / shm | old shm r/s | shm / old |")
        out.append("|---|--:|--:|--:|--:|--:|--:|")

        def med(v, k):
            return "**%.2f**" % sorted(v[k])[len(v[k]) // 2] if k in v else "-"

        for name, r in RESULTS["stores"].items():
            for c, v in sorted(r.items(), key=lambda kv: int(kv[0])):
                inv = None
                if "old_per_shm" in v:
                    inv = {"x": sorted(1.0 / x for x in v["old_per_shm"])}
                out.append("| %s | %s | %s | %s | %s | %s | %s |"
                           % (name, c, "%.0f" % v["shm"]["rps"] if "shm" in v else "-",
                              "%.0f" % v["redis"]["rps"] if "redis" in v else "-",
                              med(v, "redis_per_shm"),
                              "%.0f" % v["old"]["rps"] if "old" in v else "-",
                              med(inv, "x") if inv else "-"))
    if "latency" in RESULTS:
        out.append("\n### Latency of the typical viewport (ms; median / p99)\n")
        out.append("| image | bytes | kind | TTFB p50 | TTFB p99 | TTLB p50 | TTLB p99 |")
        out.append("|---|--:|---|--:|--:|--:|--:|")
        for name, r in RESULTS["latency"].items():
            for k in ("stateless", "session", "static"):
                v = r[k]
                out.append("| %s | %d | %s | %.2f | %.2f | %.2f | %.2f |"
                           % (name, r["bytes"], k, v["ttfb_p50_ms"], v["ttfb_p99_ms"],
                              v["ttlb_p50_ms"], v["ttlb_p99_ms"]))
    if "coldstart" in RESULTS:
        c = RESULTS["coldstart"]
        out.append("\n### Cold start (page cache dropped: %s)\n" % c["drop_caches"])
        out.append("| file | bytes | cat s | first request TTFB s | TTFB / cat |"
                   " same, file cached: TTFB s |")
        out.append("|---|--:|--:|--:|--:|--:|")
        for name in ("big-plt", "big-noplt"):
            v = c[name]
            out.append("| %s | %d | %.3f | %.3f | %.2f | %.3f |"
                       % (name, v["bytes"], v["cat_s"], v["first_ttfb_s"], v["ratio_to_cat"],
                          v["warm_first_ttfb_s"]))
    if "memory" in RESULTS:
        out.append("\n### Memory after %d sessions of the trace\n" % NSESS)
        out.append("| image | sessions | model bytes / session | trace bytes / session |"
                   " shared memory | workers RSS before -> after | PSS before -> after |")
        out.append("|---|--:|--:|--:|--:|--:|--:|")
        for name, v in RESULTS["memory"].items():
            out.append("| %s | %d | %.0f | %d | %d | %.1f -> %.1f MB | %.1f -> %.1f MB |"
                       % (name, v["sessions"], v["model_bytes_per_session"],
                          v["viewed_bytes_per_session"], v["shared_memory_bytes"],
                          v["rss_before"] / 1e6, v["rss_after"] / 1e6, v["pss_before"] / 1e6,
                          v["pss_after"] / 1e6))
    if "efficiency" in RESULTS:
        out.append("\n### Efficiency: bytes sent for the trace / bytes of the bins it needs\n")
        out.append("| image | bins | bin bytes | session sent | ratio | stateless sent | ratio |")
        out.append("|---|--:|--:|--:|--:|--:|--:|")
        for name, v in RESULTS["efficiency"].items():
            out.append("| %s | %d | %d | %d | %.3f | %d | %.2f |"
                       % (name, v["bins"], v["needed_bin_bytes"], v["session_bytes"],
                          v["session_ratio"], v["stateless_bytes"], v["stateless_ratio"]))
    if "budget" in RESULTS:
        out.append("\n### Byte budget: bytes sent / bytes of the precincts meeting each window\n")
        out.append("| image | windows | sent | meeting | ratio | median | max |"
                   " needed by synthesis | sent / needed |")
        out.append("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
        for name, v in RESULTS["budget"].items():
            out.append("| %s | %d | %d | %d | **%.3f** | %.3f | %.3f | %d | %.3f |"
                       % (name, v["windows"], v["sent_bytes"], v["meeting_bytes"], v["ratio"],
                          v["median"], v["max"], v["needed_bytes"], v["ratio_needed"]))
    if "scaling" in RESULTS:
        out.append("\n### Scaling: a fixed 512 x 384 full-resolution viewport, 1k^2 to 32k^2\n")
        out.append("| image | tiles | file MB | index MB | view bytes | r/s (c=8) | static r/s |"
                   " ratio | TTFB p50 ms | static TTFB | first request ms | libcore us/req |"
                   " libcore Ir/req | overview us |")
        out.append("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
        for name, v in RESULTS["scaling"].items():
            out.append("| %s | %d | %.1f | %.2f | %.0f | %.0f | %.0f | %.2f | %.2f | %.2f |"
                       " %.0f | %s | %s | %s |"
                       % (name, v["tiles"], v["file_bytes"] / 1e6, v["index_bytes"] / 1e6,
                          v["view_bytes"], v["rps"], v["static_rps"], v["ratio"],
                          v["ttfb_p50_ms"], v["static_ttfb_p50_ms"], v["first_request_ms"],
                          "%.1f" % (v["plan_ns"] / 1e3) if v["plan_ns"] else "-",
                          "%.0f" % v["plan_ir"] if v["plan_ir"] else "-",
                          "%.0f" % (v["overview_ns"] / 1e3) if v["overview_ns"] else "-"))
    return "\n".join(out)


def plots(outdir, work):
    if shutil.which("gnuplot") is None:
        return
    os.makedirs(outdir, exist_ok=True)
    if "throughput" in RESULTS:
        dat = os.path.join(work, "throughput.dat")
        with open(dat, "w") as f:
            for name in ("img8k-plt", "t32k-plt"):
                r = RESULTS["throughput"].get(name)
                if not r:
                    continue
                f.write("# %s\n" % name)
                for c, v in sorted(r["runs"].items(), key=lambda kv: int(kv[0])):
                    f.write("%s %.1f %.1f %.1f %.1f\n" % (c, v["stateless"]["rps"],
                                                          v["static"]["rps"], v["session"]["rps"],
                                                          v["static_session"]["rps"]))
                f.write("\n\n")
        gp = """set terminal pngcairo size 800,420 font ",10"
set output "%s"
set logscale x 2
set xtics (1, 8, 64)
set xrange [0.8:80]
set xlabel "concurrent connections"
set ylabel "requests/s"
set key outside right
set grid
set title "View-window requests vs the same bytes as static files"
plot "%s" index 0 u 1:2 w lp t "8k JPIP stateless", "" index 0 u 1:3 w lp dt 2 t "8k static (same bytes)", \
     "" index 0 u 1:4 w lp t "8k JPIP session", "" index 0 u 1:5 w lp dt 2 t "8k static (session bytes)", \
     "" index 1 u 1:2 w lp t "32k JPIP stateless", "" index 1 u 1:3 w lp dt 2 t "32k static (same bytes)", \
     "" index 1 u 1:4 w lp t "32k JPIP session", "" index 1 u 1:5 w lp dt 2 t "32k static (session bytes)"
""" % (os.path.join(outdir, "bench-throughput.png"), dat)
        subprocess.run(["gnuplot"], input=gp, text=True, check=False)
    if "scaling" in RESULTS:
        dat = os.path.join(work, "scaling.dat")
        with open(dat, "w") as f:
            for name, v in RESULTS["scaling"].items():
                f.write("%d %.1f %.1f %.3f %.3f\n" % (v["width"], v["rps"], v["static_rps"],
                                                      (v["plan_ns"] or 0) / 1e3,
                                                      v["ttfb_p50_ms"]))
        gp = """set terminal pngcairo size 800,420 font ",10"
set output "%s"
set logscale x 2
set xtics ("1k" 1024, "4k" 4096, "8k" 8192, "16k" 16384, "32k" 32768)
set xlabel "image width = height (pixels)"
set ylabel "requests/s (c=8)"
set y2label "libcore microseconds / request"
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
set key outside right
set grid
set title "Fixed 512x384 viewport: cost against image size"
plot "%s" u 1:2 w lp t "JPIP r/s", "" u 1:3 w lp dt 2 t "static r/s (same bytes)", \
     "" u 1:4 axes x1y2 w lp t "libcore us/request"
""" % (os.path.join(outdir, "bench-scaling.png"), dat)
        subprocess.run(["gnuplot"], input=gp, text=True, check=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=None)
    ap.add_argument("--plots", default=None)
    ap.add_argument("--only",
                    default="throughput,latency,coldstart,memory,efficiency,budget,scaling,"
                    "stores")
    args = ap.parse_args()
    need_tools()
    work = args.work or os.path.join(tempfile.gettempdir(), "jpip-bench")
    os.makedirs(work, exist_ok=True)
    parts = set(args.only.split(","))
    RESULTS["machine"] = machine()
    RESULTS["settings"] = {"duration": DURATION, "repeat": REPEAT, "sessions": NSESS,
                           "concurrency": CONCURRENCY, "viewport": VIEW}
    t0 = time.time()
    images = make_images(work, {"img8k-plt", "t32k-plt"} if parts == {"budget"} else
                         set(IMAGES) if parts == {"stores"} else None)
    if parts & {"throughput", "latency", "coldstart", "efficiency", "budget", "scaling"}:
        srv = Server(work)
        try:
            if "throughput" in parts:
                throughput(srv, images, work)
            if "latency" in parts:
                latency(srv, images)
            if "efficiency" in parts:
                efficiency(srv, images)
            if "budget" in parts:
                budget(srv, images)
            if "scaling" in parts:
                scaling(srv, images, work)
            if "coldstart" in parts:
                cold_start(srv, images)
        finally:
            srv.stop()
    if "memory" in parts:
        memory(images, work)
    if "stores" in parts:
        stores(images, work)
    RESULTS["seconds"] = time.time() - t0
    with open(os.path.join(work, "results.json"), "w") as f:
        json.dump(RESULTS, f, indent=1)
    if args.plots:
        plots(args.plots, work)
    print(report())
    log("done in %.0f s; results in %s" % (time.time() - t0, os.path.join(work, "results.json")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
