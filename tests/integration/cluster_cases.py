"""mod_jpip live cluster cases: two httpd instances (separate ServerRoots
and ports) share their sessions through a real redis (Debian redis-server)
and then a real memcached, started here on free loopback ports with their
own configuration and stopped after (JPIPSessionStore socache:redis and
socache:memcache). A third httpd in front balances requests between them
with mod_proxy_balancer, no stickiness (docs/cluster.md).

- a session opened on host A continues on B and back over a zoom-and-pan
  trace: the independent JPP parser finds no byte sent twice, the session
  receives exactly the union of its windows, the repeated window gets only
  an EOR;
- jpip-fetch drives a session through the balancer: requests land on both
  hosts, no byte twice, the rebuilt image decodes to the original's pixels;
- race: two channels of one session driven concurrently through both
  hosts: everything each window needs arrived (the union of what was
  received rebuilds pixel-exact); the bytes received twice are reported;
- fault (redis): the store stopped mid-trace answers 503 naming it with
  Retry-After, stateless requests still work, after a restart new sessions
  work, no worker crashes, the error log says it a bounded number of times.
"""

import http.server
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Httpd, Runner, Skip, expect, free_port, run_user  # noqa: E402
import jpp  # noqa: E402

FETCH = os.environ.get("JPIP_FETCH", "jpip-fetch")
OPJ = os.environ.get("OPJ_DECOMPRESS", "opj_decompress")
OPJC = os.environ.get("OPJ_COMPRESS", "opj_compress")
TMP = tempfile.mkdtemp(prefix="jpip-cluster-")
CONFDIR = os.path.join(os.environ.get("JPIP_SRCDIR", "."), "..", "..", "httpd-conf")

TRACE = ["fsiz=256,256", "fsiz=512,512&roff=128,128&rsiz=256,256",
         "fsiz=1024,1024&roff=300,200&rsiz=300,300", "fsiz=1024,1024&roff=500,400&rsiz=300,300",
         "fsiz=2048,2048&roff=1100,900&rsiz=400,400", "fsiz=512,512&roff=0,0&rsiz=256,256",
         "fsiz=2048,2048&roff=1100,900&rsiz=400,400"]


def key(m):
    return (m.cls & ~1, m.csn if m.cls != 8 else 0, m.id)


def messages(body):
    msgs, eor, trailing = jpp.parse(body, bodies=True)
    expect(eor is not None and trailing == 0, "no EOR at the end of an answer")
    return msgs, eor


def split_bodies(buf):
    """The answers of a --jpp file (bodies one after another, each ending
    with an EOR)."""
    out, pos = [], 0
    while pos < len(buf):
        msgs, eor, rest = jpp.parse(buf[pos:], bodies=True)
        expect(eor is not None, "a body of the --jpp file has no EOR")
        out.append(msgs)
        pos = len(buf) - rest
    return out


class Overlaps:
    """Byte ranges received per bin: counts bytes received twice."""

    def __init__(self):
        self.got = {}
        self.twice = 0
        self.total = 0

    def add(self, m):
        rs = self.got.setdefault(key(m), [])
        for lo, hi in rs:
            self.twice += max(0, min(hi, m.off + m.len) - max(lo, m.off))
        rs.append((m.off, m.off + m.len))
        self.total += m.len


def decode(path, out_dir, extra=()):
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    r = subprocess.run([OPJ, "-i", path, "-o", os.path.join(out_dir, "c.pgx")] + list(extra),
                       capture_output=True)
    if r.returncode != 0:
        return None
    return {f: open(os.path.join(out_dir, f), "rb").read() for f in sorted(os.listdir(out_dir))}


def make_big():
    ppm = os.path.join(TMP, "big.ppm")
    out = os.path.join(TMP, "big.j2k")
    w = h = 2048
    with open(ppm, "wb") as f:
        f.write(b"P6\n%d %d\n255\n" % (w, h))
        row = bytes((x * 7 + (x >> 3) * 13) & 255 for x in range(w * 3))
        for y in range(h):
            f.write(row[y % 97:] + row[:y % 97])
    subprocess.run([OPJC, "-i", ppm, "-o", out, "-n", "6", "-c", "[128,128]", "-r", "20,5,1"],
                   capture_output=True, check=True)
    return out


# ------------------------------------------------------------------ stores

class Redis:
    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="jpip-redis-", dir=TMP)
        self.conf = os.path.join(self.dir, "redis.conf")
        with open(self.conf, "w") as f:
            # docs/cluster.md: no persistence, evict least recently used
            f.write("bind 127.0.0.1\nport %d\nprotected-mode yes\ndaemonize no\n"
                    "dir %s\nsave \"\"\nappendonly no\nmaxmemory 64mb\n"
                    "maxmemory-policy volatile-lru\nlogfile %s/redis.log\n"
                    % (self.port, self.dir, self.dir))
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(["redis-server", self.conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        wait_port(self.port, b"PING\r\n", b"+PONG")

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
            self.proc = None

    def directive(self):
        return "socache:redis", "127.0.0.1:%d" % self.port, \
            ("socache_redis_module", "mod_socache_redis.so"), "RedisTimeout 2\n"


class Memcached:
    def __init__(self):
        self.port = free_port()
        self.proc = None

    def start(self):
        args = ["memcached", "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "64",
                "-I", "4m"]
        if os.getuid() == 0:
            args += ["-u", run_user()[0]]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        wait_port(self.port, b"version\r\n", b"VERSION")

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
            self.proc = None

    def directive(self):
        return "socache:memcache", "127.0.0.1:%d" % self.port, \
            ("socache_memcache_module", "mod_socache_memcache.so"), ""


def wait_port(port, probe, answer, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(probe)
                if s.recv(100).startswith(answer):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the store on port %d did not answer" % port)


# ------------------------------------------------------------------ hosts

STATUS = """
<Location "/jpip-status">
    SetHandler jpip-status
</Location>
"""


def shared_archive(big):
    """One archive directory both hosts serve (as NFS would): the same file,
    the same target id on both."""
    d = os.path.join(TMP, "archive")
    if not os.path.isdir(d):
        os.makedirs(d)
        shutil.copyfile(big, os.path.join(d, os.path.basename(big)))
        os.chmod(TMP, 0o755)
        os.chmod(d, 0o755)
        os.chmod(os.path.join(d, os.path.basename(big)), 0o644)
    return d


def backend(store, big, mpm):
    kind, arg, module, extra = store.directive()
    # the providers log every failed call; mod_jpip says it once per interval
    conf = """JPIPSessionStore %s %s
%sJPIPSessionMemory 8M
JPIPSessions 32
JPIPMaxSessionsPerClient 200
LogLevel %s:alert
<Location "/jpip">
    JPIPRoot "%s"
</Location>
%s""" % (kind, arg, extra, module[0].replace("_module", ""), shared_archive(big), STATUS)
    return Httpd(os.environ["HTTPD"], os.environ["APXS"], os.environ["JPIP_MODULE"], CONFDIR,
                 samples=None, servers=2, mpm=mpm, extra_conf=conf, extra_modules=[module])


PROXY_MODULES = [("slotmem_shm_module", "mod_slotmem_shm.so"), ("proxy_module", "mod_proxy.so"),
                 ("proxy_http_module", "mod_proxy_http.so"),
                 ("proxy_balancer_module", "mod_proxy_balancer.so"),
                 ("lbmethod_byrequests_module", "mod_lbmethod_byrequests.so")]


def front(a, b):
    """The balancer of docs/cluster.md in front of a and b."""
    confdir = tempfile.mkdtemp(prefix="jpip-front-", dir=TMP)
    with open(os.path.join(confdir, "jpip.conf"), "w") as f:
        f.write("# the front serves no JPIP itself\n")
    with open(os.path.join(confdir, "example-site.conf"), "w") as f:
        f.write("""
<Proxy "balancer://jpip">
    BalancerMember "http://127.0.0.1:%d"
    BalancerMember "http://127.0.0.1:%d"
    ProxySet lbmethod=byrequests
</Proxy>
ProxyPass "/jpip" "balancer://jpip/jpip"
ProxyPassReverse "/jpip" "balancer://jpip/jpip"
""" % (a.port, b.port))
    return Httpd(os.environ["HTTPD"], os.environ["APXS"], os.environ["JPIP_MODULE"], confdir,
                 servers=2, extra_modules=PROXY_MODULES)


def cnew(h, name, window):
    st, hd, body = h.get("/jpip/%s?type=jpp-stream&cnew=http&%s" % (name, window), timeout=60)
    expect(st == 200 and "jpip-cnew" in hd, "cnew on port %d: %d %r" % (h.port, st,
                                                                        jpp.error_text(body)))
    items = dict(i.split("=", 1) for i in hd["jpip-cnew"].split(","))
    return items["cid"], "/" + items["path"].lstrip("/"), body


def union_bytes(h, name, windows):
    ends = {}
    for w in windows:
        st, _, body = h.get("/jpip/%s?type=jpp-stream&%s" % (name, w), timeout=60)
        expect(st == 200, "stateless %s: %d" % (w, st))
        for m in messages(body)[0]:
            ends[key(m)] = max(ends.get(key(m), 0), m.off + m.len)
    return ends


def case_a_b_a(a, b, name):
    """A session opened on A continues on B and back over the trace."""
    cid, path, first = cnew(a, name, TRACE[0])
    seen = Overlaps()
    hosts = [a, b]
    for m in messages(first)[0]:
        seen.add(m)
    last = None
    for i, w in enumerate(TRACE[1:]):
        h = hosts[(i + 1) % 2]
        st, _, body = h.get("%s?cid=%s&%s" % (path, cid, w), timeout=60)
        expect(st == 200, "request %d on port %d: %d %r" % (i + 1, h.port, st,
                                                            jpp.error_text(body)[:200]))
        msgs, _ = messages(body)
        for m in msgs:
            seen.add(m)
        last = body
    expect(seen.twice == 0, "%d bytes were sent twice across the hosts" % seen.twice)
    expect(len(last) == 3 and last[0] == 0,
           "the repeated window brought %d bytes, not just the EOR" % len(last))
    want = sum(union_bytes(a, name, TRACE).values())
    expect(seen.total == want, "the session received %d bytes, the union is %d" %
           (seen.total, want))
    st, _, body = b.get("%s?cid=%s&cclose=%s&len=0" % (path, cid, cid))
    expect(st == 200, "cclose on B: %d" % st)
    st, _, body = a.get("%s?cid=%s&fsiz=64,64" % (path, cid))
    expect(st == 503 and b"does not exist" in body, "a closed channel on A answered %d" % st)


def windows_args(trace):
    args = []
    for w in trace:
        q = dict(kv.split("=") for kv in w.split("&"))
        f = q["fsiz"].split(",")
        args += ["--window", ",".join(f + q.get("roff", "0,0").split(",") +
                                      q.get("rsiz", q["fsiz"]).split(","))]
    return args


def served_cids(h):
    with open(os.path.join(h.logs, "access.log")) as f:
        return sum(1 for line in f if "cid=" in line)


def case_balancer(fr, a, b, name):
    """jpip-fetch --session through mod_proxy_balancer: requests land on
    both hosts, no byte twice, the last window decodes to the original's
    pixels."""
    before = served_cids(a), served_cids(b)
    out = os.path.join(TMP, "lb.jp2")
    url = "http://127.0.0.1:%d/jpip/%s?type=jpp-stream" % (fr.port, name)
    r = subprocess.run([FETCH, "--session", "--jpp", out + ".jpp", "-o", out] +
                       windows_args(TRACE[:-1]) + [url], capture_output=True)
    expect(r.returncode == 0, "jpip-fetch through the balancer: %s" % r.stderr.decode()[-300:])
    expect(served_cids(a) > before[0] and served_cids(b) > before[1],
           "the session's requests did not reach both hosts")
    seen = Overlaps()
    with open(out + ".jpp", "rb") as f:
        for msgs in split_bodies(f.read()):
            for m in msgs:
                seen.add(m)
    expect(seen.twice == 0, "%d bytes sent twice through the balancer" % seen.twice)
    region = "1100,900,1500,1300"
    orig = decode(big_path(name), os.path.join(TMP, "o"), ["-d", region])
    got = decode(out, os.path.join(TMP, "g"), ["-d", region])
    expect(orig is not None and got == orig, "the rebuilt window's pixels differ")


def big_path(name):
    return os.path.join(TMP, "archive", name)


class OneAnswer(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "image/jpp-stream")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


def rebuild(msgs, out):
    """What a client holds (msgs, with bodies) rebuilt by jpip-fetch: it is
    served as one answer by a throwaway HTTP server."""
    OneAnswer.body = jpp.encode(msgs)
    srv = http.server.HTTPServer(("127.0.0.1", 0), OneAnswer)
    t = threading.Thread(target=srv.handle_request)
    t.start()
    r = subprocess.run([FETCH, "-o", out, "http://127.0.0.1:%d/x?type=jpp-stream" %
                        srv.server_address[1]], capture_output=True)
    t.join(10)
    srv.server_close()
    expect(r.returncode == 0, "jpip-fetch could not rebuild: %s" % r.stderr.decode()[-300:])


def case_race(a, b, name, label):
    """Two channels of one session driven at once through both hosts."""
    cid, path, first = cnew(a, name, "fsiz=128,128")
    st, hd, body = b.get("%s?cid=%s&cnew=http&fsiz=128,128" % (path, cid))
    expect(st == 200 and "jpip-cnew" in hd, "second channel on B: %d" % st)
    cid2 = dict(i.split("=", 1) for i in hd["jpip-cnew"].split(","))["cid"]
    held = messages(first)[0] + messages(body)[0]
    wins1 = ["fsiz=1024,1024&roff=%d,%d&rsiz=256,256" % (x, y)
             for x, y in ((0, 0), (256, 0), (512, 256), (768, 512))]
    wins2 = ["fsiz=1024,1024&roff=%d,%d&rsiz=256,256" % (x, y)
             for x, y in ((128, 128), (384, 128), (640, 384), (0, 768))]
    results = {1: [], 2: []}
    errors = []

    def drive(n, c, wins, hosts):
        for i, w in enumerate(wins):
            h = hosts[i % 2]
            try:
                st, _, body = h.get("%s?cid=%s&wait=yes&%s" % (path, c, w), timeout=120)
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
                return
            if st != 200:
                errors.append("channel %d: %d %r" % (n, st, jpp.error_text(body)[:200]))
                return
            results[n].append(body)

    t1 = threading.Thread(target=drive, args=(1, cid, wins1, [a, b]))
    t2 = threading.Thread(target=drive, args=(2, cid2, wins2, [b, a]))
    t1.start()
    t2.start()
    t1.join()
    t2.join()
    expect(not errors, "; ".join(errors))
    seen = Overlaps()
    for m in held:
        seen.add(m)
    for body in results[1] + results[2]:
        msgs, _ = messages(body)
        held += msgs
        for m in msgs:
            seen.add(m)
    # everything each window needs arrived: the union rebuilds pixel-exact
    out = os.path.join(TMP, "race.jp2")
    rebuild(held, out)
    for w in wins1 + wins2:
        q = dict(kv.split("=") for kv in w.split("&"))
        ox, oy = map(int, q["roff"].split(","))
        region = "%d,%d,%d,%d" % (ox, oy, ox + 256, oy + 256)
        want = decode(big_path(name), os.path.join(TMP, "ro"),
                      ["-r", "1", "-d", "%d,%d,%d,%d" % (2 * ox, 2 * oy, 2 * ox + 512,
                                                         2 * oy + 512)])
        got = decode(out, os.path.join(TMP, "rg"),
                     ["-r", "1", "-d", "%d,%d,%d,%d" % (2 * ox, 2 * oy, 2 * ox + 512,
                                                        2 * oy + 512)])
        expect(want is not None and got == want, "window %s: the rebuilt pixels differ" % region)
    print("    (%s race: %d of %d bytes received twice)" % (label, seen.twice, seen.total),
          flush=True)


def case_fault(a, b, store, name):
    """The store stopped mid-trace, then started again."""
    cid, path, _ = cnew(a, name, TRACE[0])
    st, _, _ = b.get("%s?cid=%s&%s" % (path, cid, TRACE[1]), timeout=60)
    expect(st == 200, "before the outage: %d" % st)
    store.stop()
    t0 = time.time()
    for i, h in enumerate([a, b, a, b, a, b]):
        st, hd, body = h.get("%s?cid=%s&%s" % (path, cid, TRACE[2 + i % 3]), timeout=60)
        text = jpp.error_text(body)
        expect(st == 503 and b"session store" in text and b"127.0.0.1:%d" % store.port in text,
               "during the outage: %d %r" % (st, text[:200]))
        expect(hd.get("retry-after", "").isdigit(), "no Retry-After: %r" % hd)
        st, _, body = h.get("/jpip/%s?type=jpp-stream&cnew=http&fsiz=64,64" % name)
        expect(st == 503 and b"session store" in jpp.error_text(body),
               "cnew during the outage: %d" % st)
        st, _, body = h.get("/jpip/%s?type=jpp-stream&fsiz=128,128" % name)
        expect(st == 200 and messages(body)[1] in (1, 2), "stateless during the outage: %d" % st)
    expect(time.time() - t0 < 60, "answers during the outage took %.0f s" % (time.time() - t0))
    store.start()
    time.sleep(0.5)
    for h in (a, b):
        # each process connects afresh (store.c's kv_renew): within
        # seconds every process and thread gets new sessions again (8 in a
        # row); the provider alone took over 30 s in some runs
        good, t1 = 0, time.time()
        while good < 8 and time.time() < t1 + 15:
            st, hd, body = h.get("/jpip/%s?type=jpp-stream&cnew=http&fsiz=64,64" % name)
            if st == 200 and "jpip-cnew" in hd:
                good += 1
            else:
                good = 0
                time.sleep(0.5)
        expect(good >= 8, "no new sessions on port %d 15 s after the store came back: %d %r" %
               (h.port, st, jpp.error_text(body)[:200]))
        print("    (port %d: new sessions again %.1f s after the restart)" %
              (h.port, time.time() - t1), flush=True)
    cid2, path2, _ = cnew(b, name, TRACE[0])
    st, _, _ = a.get("%s?cid=%s&%s" % (path2, cid2, TRACE[1]), timeout=60)
    expect(st == 200, "a new session across hosts after the restart: %d" % st)
    for h in (a, b):
        log = h.error_log()
        expect("exit signal" not in log, "a worker crashed: %s" % log[-500:])
        n = log.count("JPIP0504")
        expect(1 <= n <= 2 * 8, "the outage was logged %d times on port %d" % (n, h.port))


def run_store(store_cls, big, mpm, fault):
    label = store_cls.__name__.lower()
    run = Runner()
    store = store_cls()
    try:
        store.start()
    except (OSError, RuntimeError) as e:
        print("FAIL - start %s: %s" % (label, e))
        return 0, 1
    a, b = backend(store, big, mpm), backend(store, big, mpm)
    fr = None
    try:
        a.start()
        b.start()
        fr = front(a, b)
        fr.start()
    except Exception as e:  # noqa: BLE001
        print("FAIL - start httpd (%s): %s" % (label, e))
        for h in (a, b, fr):
            if h is not None:
                h.stop()
        store.stop()
        return 0, 1
    name = os.path.basename(big)
    try:
        run.case("%s/%s: a session opened on A continues on B and back" % (label, mpm),
                 case_a_b_a, a, b, name)
        run.case("%s/%s: a session through mod_proxy_balancer, pixel-exact" % (label, mpm),
                 case_balancer, fr, a, b, name)
        run.case("%s/%s: two channels of one session at once through both hosts" %
                 (label, mpm), case_race, a, b, name, label)
        if fault:
            run.case("%s/%s: the store stopped mid-trace and started again" % (label, mpm),
                     case_fault, a, b, store, name)
    finally:
        for h in (fr, a, b):
            h.stop()
        store.stop()
    allowed = [r"JPIP0504"] if fault else []
    for h, n in ((a, "A"), (b, "B"), (fr, "front")):
        run.case("%s/%s: error log of %s clean" % (label, mpm, n),
                 lambda h=h: expect(not h.bad_log_lines(allowed),
                                    "\n  ".join(h.bad_log_lines(allowed)[:10])))
        h.cleanup()
    return run.passed, run.failed


def main():
    for tool in ("redis-server", "memcached"):
        if shutil.which(tool) is None:
            print("FAIL - %s is not installed (bootstrap.sh installs it)" % tool)
            return 1
    big = make_big()
    passed = failed = 0
    for store_cls, mpm, fault in ((Redis, "event", True), (Memcached, "prefork", False)):
        p, f = run_store(store_cls, big, mpm, fault)
        passed += p
        failed += f
    shutil.rmtree(TMP, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
