"""mod_jpip live session cases: sessions and channels whose cache models
live in shared memory, so that a client in a session never receives the
same bytes twice whichever httpd process serves each request.

Run once with the event MPM and three children, once with prefork (three
processes); every request goes over a fresh connection, so consecutive
requests of a session land in different processes. One line per case, then
`N passed, N failed`.
"""

import http.client
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Httpd, Runner, Skip, expect  # noqa: E402
import jpp  # noqa: E402

FETCH = os.environ.get("JPIP_FETCH", "jpip-fetch")
OPJ = os.environ.get("OPJ_DECOMPRESS", "opj_decompress")
OPJC = os.environ.get("OPJ_COMPRESS", "opj_compress")
TMP = tempfile.mkdtemp(prefix="jpip-sess-")

TRACE = ["fsiz=256,192", "fsiz=512,384&roff=128,96&rsiz=256,192",
         "fsiz=1024,768&roff=300,200&rsiz=300,200", "fsiz=1024,768&roff=400,250&rsiz=300,200",
         "fsiz=512,384&roff=0,0&rsiz=256,192", "fsiz=1024,768&roff=400,250&rsiz=300,200"]


def get(h, path, timeout=60):
    st, hd, body = h.get(path, timeout=timeout)
    return st, hd, body


def messages(body):
    msgs, eor, trailing = jpp.parse(body)
    expect(eor is not None and trailing == 0, "no EOR at the end of a response")
    return msgs, eor


def key(m):
    return (m.cls & ~1, m.csn if m.cls != 8 else 0, m.id)


def new_session(h, name, first="fsiz=64,48"):
    st, hd, body = get(h, "/jpip/%s?type=jpp-stream&cnew=http&%s" % (name, first))
    expect(st == 200 and "jpip-cnew" in hd, "cnew: %d %r" % (st, hd))
    items = dict(i.split("=", 1) for i in hd["jpip-cnew"].split(","))
    expect(items.get("transport") == "http" and len(items.get("cid", "")) >= 32,
           "JPIP-cnew %r" % hd["jpip-cnew"])
    expect(hd.get("cache-control") == "no-cache", "session answers must not be cached")
    return items["cid"], "/" + items["path"].lstrip("/"), body


def union_bytes(h, name, windows):
    """The bytes of the union of the windows: each bin's furthest end over
    stateless answers for each window."""
    ends = {}
    for w in windows:
        st, _, body = get(h, "/jpip/%s?type=jpp-stream&%s" % (name, w))
        expect(st == 200, "stateless %s: %d" % (w, st))
        for m in messages(body)[0]:
            ends[key(m)] = max(ends.get(key(m), 0), m.off + m.len)
    return ends


def case_trace(h, name):
    """A pan/zoom trace in one session over fresh connections never receives
    a byte twice, and receives exactly the union of its windows; the last
    window repeated returns only the EOR."""
    cid, path, first = new_session(h, name, TRACE[0])
    got = {}
    total = 0
    bodies = [first] + [get(h, "%s?cid=%s&%s" % (path, cid, w))[2] for w in TRACE[1:]]
    for i, body in enumerate(bodies):
        msgs, eor = messages(body)
        for m in msgs:
            for lo, hi in got.get(key(m), []):
                expect(m.off + m.len <= lo or hi <= m.off or m.len == 0,
                       "request %d repeats bytes of %r" % (i, m))
            got.setdefault(key(m), []).append((m.off, m.off + m.len))
            total += m.len
    expect(len(bodies[-1]) == 3 and bodies[-1][0] == 0,
           "the repeated window returned %d bytes, not just the EOR" % len(bodies[-1]))
    want = union_bytes(h, name, TRACE)
    expect(total == sum(want.values()), "received %d body bytes, the union is %d" %
           (total, sum(want.values())))
    st, _, _ = get(h, "%s?cid=%s&cclose=%s&len=0" % (path, cid, cid))
    expect(st == 200, "cclose: %d" % st)
    st, _, body = get(h, "%s?cid=%s&fsiz=64,48" % (path, cid))
    expect(st == 503 and b"expired" in body, "a closed channel answered %d" % st)


def decode(path, out_dir, extra=()):
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    r = subprocess.run([OPJ, "-i", path, "-o", os.path.join(out_dir, "c.pgx")] + list(extra),
                       capture_output=True)
    if r.returncode != 0:
        return None
    return {f: open(os.path.join(out_dir, f), "rb").read() for f in sorted(os.listdir(out_dir))}


def case_parallel(h, name, n=16):
    """n sessions in parallel, each fetching the trace through jpip-fetch
    --session from its own thread: each gets exactly what it gets alone,
    and each rebuild decodes to the same pixels as the original."""
    url = "http://127.0.0.1:%d/jpip/%s?type=jpp-stream" % (h.port, name)
    wins = []
    for w in TRACE:
        q = dict(kv.split("=") for kv in w.split("&"))
        f = q["fsiz"].split(",")
        o = q.get("roff", "0,0").split(",")
        s = q.get("rsiz", q["fsiz"]).split(",")
        wins += ["--window", ",".join(f + o + s)]
    alone = os.path.join(TMP, "alone.jp2")
    r = subprocess.run([FETCH, "--session", "--jpp", alone + ".jpp", "-o", alone] + wins + [url],
                       capture_output=True)
    expect(r.returncode == 0, "alone: %s" % r.stderr.decode())
    results = [None] * n

    def worker(i):
        out = os.path.join(TMP, "par%d.jp2" % i)
        rr = subprocess.run([FETCH, "--session", "--jpp", out + ".jpp", "-o", out] + wins + [url],
                            capture_output=True)
        results[i] = (rr.returncode, rr.stderr.decode(), out)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    want = decode(alone, os.path.join(TMP, "a"), ["-r", "0"])
    orig = decode(os.path.join(h.archive, name), os.path.join(TMP, "o"),
                  ["-d", "400,250,700,450"])
    for i, (rc, err, out) in enumerate(results):
        expect(rc == 0, "session %d: %s" % (i, err))
        expect(os.path.getsize(out + ".jpp") == os.path.getsize(alone + ".jpp"),
               "session %d received %d bytes, alone %d" %
               (i, os.path.getsize(out + ".jpp"), os.path.getsize(alone + ".jpp")))
        expect(decode(out, os.path.join(TMP, "b"), ["-r", "0"]) == want,
               "session %d decodes differently" % i)
        got = decode(out, os.path.join(TMP, "b"), ["-d", "400,250,700,450"])
        expect(got == orig, "session %d: the last window's pixels differ" % i)


def case_eviction(h, name, slots):
    """More sessions than JPIPSessions: the oldest idle ones go, new ones
    work, an evicted cid gets 503, and the status page shows the bound."""
    cids = [new_session(h, name)[:2] for _ in range(slots + 3)]
    for cid, path in cids[:3]:
        st, _, body = get(h, "%s?cid=%s&fsiz=64,48" % (path, cid))
        expect(st == 503 and b"does not exist or has expired" in body,
               "evicted channel answered %d %r" % (st, body[:80]))
    for cid, path in cids[3:]:
        st, _, _ = get(h, "%s?cid=%s&fsiz=128,96" % (path, cid))
        expect(st == 200, "a live session answered %d" % st)
    st, hd, body = get(h, "/jpip-status?json")
    import json
    s = json.loads(body)
    expect(s["sessions"] <= slots and s["sessions_evicted"] >= 3, "status %r" % s)
    expect(s["shared_memory_bytes"] <= 2 * 1024 * 1024, "shared memory %d over the bound" %
           s["shared_memory_bytes"])


def case_preemption(h, big):
    """A second request on a channel pre-empts the one streaming: the first
    ends with EOR 3, and what it did not send comes with the second, once."""
    cid, path, opening = new_session(h, big)
    fw, fh = 2048, 2048
    conn = http.client.HTTPConnection("127.0.0.1", h.port, timeout=60)
    conn.request("GET", "%s?cid=%s&fsiz=%d,%d" % (path, cid, fw, fh))
    resp = conn.getresponse()
    expect(resp.status == 200, "first request: %d" % resp.status)
    head = resp.read(20000)  # read a little; the rest waits in the sockets
    second = {}

    def later():
        second["r"] = get(h, "%s?cid=%s&fsiz=%d,%d" % (path, cid, fw, fh), timeout=120)

    t = threading.Thread(target=later)
    t.start()
    time.sleep(1.0)
    first = head + resp.read()
    conn.close()
    t.join()
    msgs0, _ = messages(opening)
    msgs1, eor1 = messages(first)
    st2, _, body2 = second["r"]
    msgs2, eor2 = messages(body2)
    expect(eor1 == 3, "the pre-empted response ended with EOR %r, not 3" % eor1)
    expect(st2 == 200 and eor2 in (1, 2), "the second: %d EOR %r" % (st2, eor2))
    seen = {}
    for m in msgs0 + msgs1 + msgs2:
        for lo, hi in seen.get(key(m), []):
            expect(m.off + m.len <= lo or hi <= m.off or m.len == 0, "sent twice: %r" % m)
        seen.setdefault(key(m), []).append((m.off, m.off + m.len))
    want = union_bytes(h, big, ["fsiz=%d,%d" % (fw, fh)])
    got = sum(m.len for m in msgs0 + msgs1 + msgs2)
    expect(got == sum(want.values()), "the session carried %d bytes, the window is %d" %
           (got, sum(want.values())))


def reset_after(h, path, nbytes):
    """A GET (HTTP/1.0: the answer carries its length) on a socket with a
    small receive buffer that reads the headers and nbytes of the body,
    then resets the connection (RST) while the server is still writing.
    Returns (headers, the body bytes read)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    s.settimeout(60)
    s.connect(("127.0.0.1", h.port))
    s.sendall(b"GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" % path.encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(4096)
        expect(d, "the connection closed before the headers")
        buf += d
    head, body = buf.split(b"\r\n\r\n", 1)
    while len(body) < nbytes:
        d = s.recv(min(65536, nbytes - len(body)))
        if not d:
            break
        body += d
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    lines = head.decode("latin-1").split("\r\n")
    hd = dict((k.strip().lower(), v.strip()) for k, v in
              (ln.split(":", 1) for ln in lines[1:] if ":" in ln))
    expect(lines[0].split()[1] == "200", "status line %r" % lines[0])
    return hd, body


def case_reset_mid_answer(h, big):
    """Client resets at several points of an answer in a session (after the
    headers, after a few KB, after hundreds of KB, after MB): none of an
    answer that did not complete counts as held, so the same window asked
    again on the channel brings everything, and the image jpip-fetch
    rebuilds from that answer alone decodes to the original's pixels. The
    bytes the resets cost (received whole, then sent again) are reported."""
    window = "fsiz=2048,2048"
    hd, body = reset_after(h, "/jpip/%s?type=jpp-stream&cnew=http&%s" % (big, window), 20000)
    items = dict(i.split("=", 1) for i in hd["jpip-cnew"].split(","))
    cid, path = items["cid"], "/" + items["path"].lstrip("/")
    size = int(hd.get("content-length", "0"))
    expect(size > 1 << 20, "the answer (%d bytes) is too small to be cut by resets" % size)
    partial = [body]
    for n in (0, 3000, 400000, min(3 << 20, size // 2)):
        time.sleep(0.3)
        partial.append(reset_after(h, "%s?cid=%s&%s" % (path, cid, window), n)[1])
    time.sleep(0.3)
    resent = sum(m.len for b in partial for m in jpp.parse_prefix(b)[0])
    out = os.path.join(TMP, "reset.jp2")
    url = "http://127.0.0.1:%d%s?cid=%s&type=jpp-stream" % (h.port, path, cid)
    r = subprocess.run([FETCH, "--jpp", out + ".jpp", "--window", "2048,2048,0,0,2048,2048",
                        "-o", out, url], capture_output=True)
    expect(r.returncode == 0, "jpip-fetch on the channel after the resets: %s" %
           r.stderr.decode()[-300:])
    with open(out + ".jpp", "rb") as f:
        msgs, eor = messages(f.read())
    want = union_bytes(h, big, [window])
    got = sum(m.len for m in msgs)
    expect(got == sum(want.values()),
           "after the resets the window brought %d bytes of %d: the aborted answers were "
           "counted as delivered" % (got, sum(want.values())))
    orig = decode(os.path.join(h.archive, big), os.path.join(TMP, "ro"), ["-r", "0"])
    expect(decode(out, os.path.join(TMP, "rb"), ["-r", "0"]) == orig,
           "the rebuilt image differs from the original")
    print("    (resets: %d bytes received in whole messages before the resets were sent "
          "again)" % resent)
    # and the window again: only the EOR
    st, _, body = get(h, "%s?cid=%s&%s" % (path, cid, window))
    expect(st == 200 and len(body) == 3 and body[0] == 0,
           "the repeated window brought %d bytes" % len(body))


def gone(pid):
    """The process has exited (it may still await its parent)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def case_owner_killed(h, big):
    """The process answering on a session is killed mid-answer (a crash, a
    hard restart): the next request on the session is answered at once,
    from an emptied model, instead of waiting for an owner that is gone."""
    cid, path, _ = new_session(h, big)
    conn = http.client.HTTPConnection("127.0.0.1", h.port, timeout=60)
    conn.request("GET", "%s?cid=%s&fsiz=2048,2048" % (path, cid))
    resp = conn.getresponse()
    expect(resp.status == 200, "first request: %d" % resp.status)
    resp.read(20000)  # the rest waits: the request owns the session
    kids = h.children()
    for pid in kids:
        os.kill(pid, signal.SIGKILL)
    conn.close()
    t0 = time.time()
    for pid in kids:  # dead (a zombie at most) before the next request
        while time.time() < t0 + 20 and not gone(pid):
            time.sleep(0.05)
    for attempt in range(3):
        # a child that took the connection as it was dying resets it
        try:
            st, _, body = get(h, "%s?cid=%s&fsiz=256,256" % (path, cid), timeout=120)
            break
        except ConnectionResetError:
            if attempt == 2:
                raise
            time.sleep(0.5)
    took = time.time() - t0
    expect(st == 200, "after the owner died: %d %r" % (st, body[:100]))
    msgs, eor = messages(body)
    expect(eor in (1, 2) and took < 20, "EOR %r after %.1f s" % (eor, took))
    # the model was emptied: the main header comes again
    expect(any(m.cls == 6 for m in msgs), "no main header after the model was reset")
    st, _, body = get(h, "/jpip-status?json")
    import json
    expect(json.loads(body)["sessions_reclaimed"] >= 1, "status %s" % body)


def case_target_bound(h, name, other):
    cid, path, _ = new_session(h, name)
    st, _, body = get(h, "/jpip/%s?cid=%s&fsiz=64,48" % (other, cid))
    expect(st == 409 and b"another target" in body, "other target: %d %r" % (st, body[:80]))
    st, _, _ = get(h, "/jpip/%s?cid=%s&fsiz=64,48" % (name, cid))
    expect(st == 200, "same target named again: %d" % st)


def case_graceful(h, name):
    """apachectl -k graceful under load: no failed request, and the
    sessions survive (the store is kept across the restart)."""
    cid, path, _ = new_session(h, name)
    failures = []
    stop = threading.Event()

    def load(i):
        while not stop.is_set():
            try:
                st, _, body = get(h, "/jpip/%s?type=jpp-stream&fsiz=256,192&len=%d" %
                                  (name, 2000 + i))
                if st != 200 or body[-3] != 0:
                    failures.append("status %d" % st)
            except Exception as e:  # noqa: BLE001
                failures.append(repr(e))

    threads = [threading.Thread(target=load, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    os.kill(h.proc.pid, signal.SIGUSR1)  # graceful restart
    time.sleep(2.5)
    stop.set()
    for t in threads:
        t.join()
    expect(not failures, "%d failed requests during graceful: %s" % (len(failures), failures[:3]))
    st, _, body = get(h, "%s?cid=%s&fsiz=256,192" % (path, cid))
    expect(st == 200, "the session did not survive the graceful restart: %d" % st)


def make_big():
    """A 2048x2048 RGB picture, lossless: a response long enough to be
    pre-empted."""
    ppm = os.path.join(TMP, "big.ppm")
    out = os.path.join(TMP, "big.j2k")
    w = h = 2048
    with open(ppm, "wb") as f:
        f.write(b"P6\n%d %d\n255\n" % (w, h))
        row = bytes((x * 7 + (x >> 3) * 13) & 255 for x in range(w * 3))
        for y in range(h):
            f.write(row[y % 97:] + row[:y % 97])
    subprocess.run([OPJC, "-i", ppm, "-o", out, "-n", "6", "-c", "[128,128]"],
                   capture_output=True, check=True)
    return out


def run_mpm(mpm, big):
    extra = """
JPIPSessions 8
JPIPSessionMemory 1M
JPIPSessionTimeout 300
<Location "/jpip-status">
    SetHandler jpip-status
</Location>
"""
    h = Httpd(os.environ["HTTPD"], os.environ["APXS"], os.environ["JPIP_MODULE"],
              os.path.join(os.environ["JPIP_SRCDIR"], "..", "..", "httpd-conf"),
              samples=os.environ.get("JPIP_SAMPLES"), extra_files=[big], servers=3, mpm=mpm,
              extra_conf=extra)
    run = Runner()
    try:
        h.start()
    except Exception as e:  # noqa: BLE001
        print("FAIL - start httpd (%s): %s" % (mpm, e))
        return 0, 1
    name = "precincts.jp2"
    try:
        run.case("%s: three or more processes" % mpm,
                 lambda: expect(len(h.children()) >= 3, "%d children" % len(h.children())))
        run.case("%s: pan/zoom trace in one session" % mpm, case_trace, h, name)
        run.case("%s: a channel is bound to its target" % mpm, case_target_bound, h, name,
                 "sample.j2k")
        run.case("%s: 16 sessions in parallel" % mpm, case_parallel_small, h, name)
        run.case("%s: eviction beyond JPIPSessions" % mpm, case_eviction, h, name, 8)
        run.case("%s: pre-emption ends the first response with EOR 3" % mpm, case_preemption,
                 h, os.path.basename(big))
        run.case("%s: client resets mid-answer: nothing of it counts as held" % mpm,
                 case_reset_mid_answer, h, os.path.basename(big))
        run.case("%s: a session whose process was killed is taken back" % mpm,
                 case_owner_killed, h, os.path.basename(big))
        run.case("%s: graceful restart under load" % mpm, case_graceful, h, name)
    finally:
        h.stop()
    run.case("%s: error log clean" % mpm,
             lambda: expect(not h.bad_log_lines(), "\n  ".join(h.bad_log_lines()[:10])))
    h.cleanup()
    return run.passed, run.failed


def case_model_full(h, big):
    """A session whose cache model outgrows its slot goes on: no EOR 6, no
    503; what it forgets (partly held precincts) is sent again, so the
    union of what it received covers every window, and the model stays
    within its slot."""
    cid, path, first = new_session(h, big)
    eors = []
    ends = {}
    for m in messages(first)[0]:
        ends[key(m)] = max(ends.get(key(m), 0), m.off + m.len)
    # scattered small windows at full size: precincts far apart, each a
    # run of its own in the model
    for i in range(400):
        x, y = (i * 389) % 1984, (i * 211 + (i // 9) * 67) % 1984
        st, _, body = get(h, "%s?cid=%s&fsiz=2048,2048&roff=%d,%d&rsiz=64,64&len=%d" %
                          (path, cid, x, y, 3000 + i % 7 * 50))
        expect(st == 200, "request %d: %d %r" % (i, st, body[:80]))
        msgs, eor = messages(body)
        eors.append(eor)
        for m in msgs:
            expect(m.off <= ends.get(key(m), 0), "a hole in bin %s" % (key(m),))
            ends[key(m)] = max(ends.get(key(m), 0), m.off + m.len)
    expect(6 not in eors, "EOR 6 after %d requests" % (eors.index(6) + 1 if 6 in eors else 0))
    st, _, body = get(h, "/jpip-status?json")
    import json
    s = json.loads(body)
    expect(s["sessions"] == 1, "the session is gone: %r" % s)
    # a window asked again in full: together with what came before, the
    # client holds all of it
    w = "fsiz=2048,2048&roff=389,211&rsiz=64,64"
    st, _, body = get(h, "%s?cid=%s&%s" % (path, cid, w))
    expect(st == 200, "the session answered %d" % st)
    expect(messages(body)[1] in (1, 2), "the last answer ended with EOR %s" % messages(body)[1])
    for m in messages(body)[0]:
        ends[key(m)] = max(ends.get(key(m), 0), m.off + m.len)
    want = union_bytes(h, big, [w])
    short = [k for k, v in want.items() if ends.get(k, 0) < v]
    expect(not short, "%d bins of the window were never completed: %r" % (len(short), short[:5]))


def run_small_store(big):
    """A store of two small sessions (one httpd, event MPM)."""
    extra = """
JPIPSessions 2
JPIPSessionMemory 16K
<Location "/jpip-status">
    SetHandler jpip-status
</Location>
"""
    h = Httpd(os.environ["HTTPD"], os.environ["APXS"], os.environ["JPIP_MODULE"],
              os.path.join(os.environ["JPIP_SRCDIR"], "..", "..", "httpd-conf"),
              samples=os.environ.get("JPIP_SAMPLES"), extra_files=[big], servers=2,
              mpm="event", extra_conf=extra)
    run = Runner()
    try:
        h.start()
    except Exception as e:  # noqa: BLE001
        print("FAIL - start httpd (small store): %s" % e)
        return 0, 1
    try:
        run.case("small store: a session whose model outgrows its slot goes on, "
                 "missing nothing", case_model_full, h, os.path.basename(big))
    finally:
        h.stop()
    run.case("small store: error log clean",
             lambda: expect(not h.bad_log_lines(), "\n  ".join(h.bad_log_lines()[:10])))
    h.cleanup()
    return run.passed, run.failed


def get_from(h, addr, path, timeout=60):
    """A GET whose connection comes from addr (any 127/8 address is ours)."""
    conn = http.client.HTTPConnection("127.0.0.1", h.port, timeout=timeout,
                                      source_address=(addr, 0))
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def case_fair_eviction(h, name):
    """One host with many addresses (a NAT pool: 10 addresses, 320 cnew
    into 64 sessions) does not evict another client's 3 sessions, which
    are fewer than its share: eviction takes from whoever holds the
    most."""
    mine = []
    for _ in range(3):
        st, hd, _ = get_from(h, "127.0.0.50", "/jpip/%s?type=jpp-stream&cnew=http&fsiz=64,48" %
                             name)
        expect(st == 200, "cnew: %d" % st)
        mine.append(dict(i.split("=", 1) for i in hd["jpip-cnew"].split(","))["cid"])
    refused = 0
    for i in range(320):
        st, _, _ = get_from(h, "127.0.0.%d" % (100 + i % 10),
                            "/jpip/%s?type=jpp-stream&cnew=http&fsiz=64,48" % name)
        refused += st != 200
    expect(refused == 0, "%d of the 320 cnew were refused" % refused)
    for cid in mine:
        st, _, body = get_from(h, "127.0.0.50", "/jpip?cid=%s&fsiz=128,96" % cid)
        expect(st == 200, "the other client's session was evicted: %d %r" %
               (st, jpp.error_text(body)[:100]))
    st, _, body = get(h, "/jpip-status?json")
    import json
    s = json.loads(body)
    expect(s["sessions_evicted"] >= 323 - 64, "status %r" % s)


def case_prefix_groups(h, name):
    """JPIPSessionClientPrefix 24: the addresses of one /24 are one client
    for JPIPMaxSessionsPerClient."""
    for i in range(4):
        st, _, body = get_from(h, "127.0.1.%d" % (10 + i),
                               "/jpip/%s?type=jpp-stream&cnew=http&fsiz=64,48" % name)
        expect(st == 200, "cnew %d: %d" % (i, st))
    st, _, body = get_from(h, "127.0.1.77", "/jpip/%s?type=jpp-stream&cnew=http&fsiz=64,48" %
                           name)
    expect(st == 503 and b"JPIPMaxSessionsPerClient" in jpp.error_text(body),
           "a fifth session of the /24: %d %r" % (st, jpp.error_text(body)[:120]))
    st, _, _ = get_from(h, "127.0.2.1", "/jpip/%s?type=jpp-stream&cnew=http&fsiz=64,48" % name)
    expect(st == 200, "another /24 was refused: %d" % st)


def shared_mappings(pid):
    """The parent's shared anonymous mappings (apr_shm segments)."""
    with open("/proc/%d/maps" % pid) as f:
        return [ln.split()[0] for ln in f if "/dev/zero" in ln or "SYSV" in ln]


def case_restart_frees_segment(h, name):
    """Graceful restarts that change JPIPSessions each make a new segment:
    the parent keeps none of the old ones, and sessions work after each."""
    before = shared_mappings(h.proc.pid)
    for n in (17, 18, 19):
        with open(h.conf) as f:
            conf = f.read()
        with open(h.conf, "w") as f:
            f.write(conf.replace("JPIPSessions %d" % (n - 1), "JPIPSessions %d" % n))
        gen = set(h.children())
        os.kill(h.proc.pid, signal.SIGUSR1)
        t0 = time.time()
        while time.time() < t0 + 20 and (not h.children() or set(h.children()) & gen):
            time.sleep(0.1)
        new_session(h, name)
        now = shared_mappings(h.proc.pid)
        expect(len(now) == len(before), "after a restart to %d sessions the parent maps %d "
               "segments, %d before" % (n, len(now), len(before)))
    expect(now != before, "the segment was not replaced")


def run_fair():
    """Fair eviction and address groups (event MPM)."""
    extra = """
JPIPSessions 16
JPIPSessionMemory 1M
JPIPMaxSessionsPerClient 4
JPIPSessionClientPrefix 24 64
<Location "/jpip-status">
    SetHandler jpip-status
</Location>
"""
    run = Runner()
    h = Httpd(os.environ["HTTPD"], os.environ["APXS"], os.environ["JPIP_MODULE"],
              os.path.join(os.environ["JPIP_SRCDIR"], "..", "..", "httpd-conf"),
              samples=os.environ.get("JPIP_SAMPLES"), servers=2, mpm="event",
              extra_conf=extra)
    try:
        h.start()
    except Exception as e:  # noqa: BLE001
        print("FAIL - start httpd (fair): %s" % e)
        return 0, 1
    try:
        run.case("address groups: one /24 is one client for JPIPMaxSessionsPerClient",
                 case_prefix_groups, h, "precincts.jp2")
        run.case("graceful restarts that resize the store leave no segment behind",
                 case_restart_frees_segment, h, "precincts.jp2")
    finally:
        h.stop()
    h.cleanup()
    # eviction, each address its own client, no per-client limit
    extra = extra.replace("JPIPMaxSessionsPerClient 4", "JPIPMaxSessionsPerClient 0")
    extra = extra.replace("JPIPSessions 16", "JPIPSessions 64").replace("1M", "4M")
    extra = extra.replace("JPIPSessionClientPrefix 24 64", "")
    h = Httpd(os.environ["HTTPD"], os.environ["APXS"], os.environ["JPIP_MODULE"],
              os.path.join(os.environ["JPIP_SRCDIR"], "..", "..", "httpd-conf"),
              samples=os.environ.get("JPIP_SAMPLES"), servers=2, mpm="event",
              extra_conf=extra)
    try:
        h.start()
    except Exception as e:  # noqa: BLE001
        print("FAIL - start httpd (fair): %s" % e)
        return run.passed, run.failed + 1
    try:
        run.case("fair eviction: 320 cnew from 10 addresses leave another client's sessions",
                 case_fair_eviction, h, "precincts.jp2")
    finally:
        h.stop()
    run.case("fair eviction: error log clean",
             lambda: expect(not h.bad_log_lines(), "\n  ".join(h.bad_log_lines()[:10])))
    h.cleanup()
    return run.passed, run.failed


def case_parallel_small(h, name):
    # 16 sessions, but JPIPSessions is 8 here: run them in two waves
    case_parallel(h, name, 8)
    case_parallel(h, name, 8)


def main():
    big = make_big()
    passed = failed = 0
    # $JPIP_SESSION_MPMS: a subset (the output-path variants of Makefile.am)
    for mpm in os.environ.get("JPIP_SESSION_MPMS", "event prefork").split():
        p, f = run_mpm(mpm, big)
        passed += p
        failed += f
    p, f = run_small_store(big)
    passed += p
    failed += f
    if not os.environ.get("JPIP_SESSION_MPMS"):
        p, f = run_fair()
        passed += p
        failed += f
    shutil.rmtree(TMP, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
