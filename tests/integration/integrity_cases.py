"""mod_jpip integrity cases: never another file's bytes, no worker killed
by a file that changes, one index build per host.

A target replaced by another file of the same size and the same mtime
(renamed over it, or rewritten in place with its mtime set back), across
several processes (event and prefork) and across a graceful restart: every
answer is byte-identical to the answer for a fresh copy of the current
file (which the server indexes from scratch), and JPIP-tid changes. A
target cut short, extended, rewritten or deleted while it streams, with
EnableMMAP On: no worker dies. One line per case, then `N passed, N
failed`.
"""

import http.client
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
from harness import Httpd, Runner, Skip, expect  # noqa: E402
import jpp  # noqa: E402

OPJC = os.environ.get("OPJ_COMPRESS", "opj_compress")
TMP = tempfile.mkdtemp(prefix="jpip-integ-")
VIEWS = ["fsiz=128,96", "fsiz=512,384&roff=64,32&rsiz=256,192", "fsiz=1024,768"]


def synth(path, w, h, seed):
    with open(path, "wb") as f:
        f.write(b"P6\n%d %d\n255\n" % (w, h))
        row = bytes(((x * (7 + seed)) ^ (x >> 2) * (3 + seed)) & 255 for x in range(w * 3))
        for y in range(h):
            k = (y * (5 + seed)) % len(row)
            f.write(row[k:] + row[:k])


def encode(name, w, h, seed, opts=()):
    ppm = os.path.join(TMP, name + ".ppm")
    out = os.path.join(TMP, name)
    synth(ppm, w, h, seed)
    subprocess.run([OPJC, "-i", ppm, "-o", out] + list(opts), capture_output=True, check=True)
    return out


def same_size_pair():
    """Two JP2 files of different pictures and exactly the same size: the
    shorter is padded with a `free` box."""
    a = encode("a.jp2", 1024, 768, 1, ["-n", "5", "-r", "30,10,1", "-c", "[64,64]"])
    b = encode("b.jp2", 1024, 768, 2, ["-n", "5", "-r", "30,10,1", "-c", "[64,64]"])
    da, db = open(a, "rb").read(), open(b, "rb").read()
    n = max(len(da), len(db)) + 16
    out = []
    for name, d in (("A.jp2", da), ("B.jp2", db)):
        pad = n - len(d)
        d += pad.to_bytes(4, "big") + b"free" + b"\0" * (pad - 8)
        p = os.path.join(TMP, name)
        with open(p, "wb") as f:
            f.write(d)
        out.append(p)
    expect(os.path.getsize(out[0]) == os.path.getsize(out[1]), "sizes differ")
    expect(open(out[0], "rb").read() != open(out[1], "rb").read(), "same bytes")
    return out


def get(h, path, timeout=60):
    return h.get(path, timeout=timeout)


def answer(h, name, view):
    st, hd, body = get(h, "/jpip/%s?type=jpp-stream&%s" % (name, view))
    expect(st == 200, "%s %s: %d %r" % (name, view, st, jpp.error_text(body)[:200]))
    return hd.get("jpip-tid"), body


def reference(h, src, tag):
    """Answers for a fresh copy of src (a new name: indexed from scratch)."""
    name = "ref-%s-%d.jp2" % (tag, int(time.time() * 1e6))
    dst = os.path.join(h.archive, name)
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o644)
    return [answer(h, name, v)[1] for v in VIEWS]


def replace_same_stat(target, src, in_place):
    """Put src's bytes at target keeping size and mtime: renamed over
    (cp, touch -r, mv) or rewritten in place (then touch -r)."""
    st = os.stat(target)
    if in_place:
        with open(src, "rb") as f, open(target, "r+b") as g:
            g.write(f.read())
    else:
        tmp = target + ".new"
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o644)
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.rename(tmp, target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    st2 = os.stat(target)
    expect(st2.st_size == st.st_size and st2.st_mtime_ns == st.st_mtime_ns,
           "size or mtime changed")


def check_all(h, name, refs, tid_old, rounds=12):
    """Every answer over fresh connections (all processes) is the
    reference; the tid is not the old one."""
    tids = set()
    for i in range(rounds):
        v = i % len(VIEWS)
        tid, body = answer(h, name, VIEWS[v])
        expect(body == refs[v], "answer %d (%s) is not the current file's (%d vs %d bytes)"
               % (i, VIEWS[v], len(body), len(refs[v])))
        tids.add(tid)
    expect(tid_old not in tids, "JPIP-tid did not change: %s" % tid_old)
    expect(len(tids) == 1, "processes disagree on JPIP-tid: %s" % tids)
    return tids.pop()


def warm(h, name, rounds=12):
    tid = None
    for i in range(rounds):
        tid, _ = answer(h, name, VIEWS[i % len(VIEWS)])
    return tid


def graceful(h):
    os.kill(h.proc.pid, signal.SIGUSR1)
    time.sleep(1.0)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            if h.get("/")[0] == 200 and len(h.children()) >= 2:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("no answer after the graceful restart")


def case_swaps(h, a, b):
    name = "swap.jp2"
    target = os.path.join(h.archive, name)
    shutil.copyfile(a, target)
    os.chmod(target, 0o644)
    shutil.copyfile(a, os.path.join(h.archive, "ref-a.jp2"))
    os.chmod(os.path.join(h.archive, "ref-a.jp2"), 0o644)
    refs_a = reference(h, a, "a")
    refs_b = reference(h, b, "b")
    tid = warm(h, name)
    # renamed over, same size and mtime
    replace_same_stat(target, b, in_place=False)
    tid = check_all(h, name, refs_b, tid)
    # rewritten in place, mtime set back
    replace_same_stat(target, a, in_place=True)
    tid = check_all(h, name, refs_a, tid)
    # swapped, then a graceful restart: the index on disk is the old file's
    replace_same_stat(target, b, in_place=False)
    graceful(h)
    tid = check_all(h, name, refs_b, tid)
    # and swapped in place again after the restart
    replace_same_stat(target, a, in_place=True)
    check_all(h, name, refs_a, tid)


def case_session_sees_new_file(h, a, b):
    """A session whose target is replaced (same size and mtime) gets the new
    JPIP-tid and the new file's bytes."""
    name = "sess.jp2"
    target = os.path.join(h.archive, name)
    shutil.copyfile(a, target)
    os.chmod(target, 0o644)
    refs_b = reference(h, b, "sb")
    st, hd, _ = get(h, "/jpip/%s?type=jpp-stream&cnew=http&%s" % (name, VIEWS[0]))
    expect(st == 200 and "jpip-cnew" in hd, "cnew: %d" % st)
    items = dict(i.split("=", 1) for i in hd["jpip-cnew"].split(","))
    tid0 = hd.get("jpip-tid")
    replace_same_stat(target, b, in_place=False)
    st, hd, body = get(h, "/%s?cid=%s&%s" % (items["path"].lstrip("/"), items["cid"], VIEWS[2]))
    expect(st == 200, "session request: %d" % st)
    expect(hd.get("jpip-tid") not in (None, tid0), "no new JPIP-tid in the session: %r"
           % hd.get("jpip-tid"))
    got = {(m.cls, m.csn, m.id, m.off): m.body for m in jpp.parse(body, bodies=True)[0]}
    want = {(m.cls, m.csn, m.id, m.off): m.body
            for m in jpp.parse(refs_b[2], bodies=True)[0]}
    expect(got == want, "the session's answer is not the new file's (%d vs %d messages)"
           % (len(got), len(want)))


# ------------------------------------------------------- files that shrink

def stream_slowly(port, path, out):
    """Read a long answer slowly; record how it ended."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode())
        n = 0
        while True:
            d = s.recv(16384)
            if not d:
                break
            n += len(d)
            time.sleep(0.01)
        out.append(n)
    except OSError as e:
        out.append(e)
    finally:
        s.close()


def case_shrink(h, big, mode):
    name = "shrink-%s.j2k" % mode
    target = os.path.join(h.archive, name)
    shutil.copyfile(big, target)
    os.chmod(target, 0o644)
    st, _, body = get(h, "/jpip/%s?type=jpp-stream&fsiz=64,64" % name)  # indexed
    expect(st == 200, "first request: %d" % st)
    size = os.path.getsize(target)
    results = []
    threads = [threading.Thread(target=stream_slowly,
                                args=(h.port, "/jpip/%s?type=jpp-stream&fsiz=2048,2048" % name,
                                      results)) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    if mode == "truncate":
        os.truncate(target, size // 3)
    elif mode == "empty":
        open(target, "r+b").truncate(0)
    elif mode == "extend":
        with open(target, "ab") as f:
            f.write(b"\0" * size)
    elif mode == "rewrite":
        with open(target, "r+b") as f:
            f.write(b"\xff" * (size // 2))
        os.truncate(target, size // 2)
    elif mode == "delete":
        os.unlink(target)
    for t in threads:
        t.join(60)
    expect(all(not t.is_alive() for t in threads), "a streaming request hung")
    # the next request sees the file as it is now
    st, _, body = get(h, "/jpip/%s?type=jpp-stream&fsiz=64,64" % name)
    if mode in ("delete",):
        expect(st == 404, "deleted target: %d" % st)
    elif mode in ("empty", "truncate", "rewrite"):
        expect(st in (200, 415), "changed target: %d %r" % (st, jpp.error_text(body)[:200]))
    else:
        expect(st == 200, "extended target: %d" % st)
    bad = [ln for ln in h.error_log().splitlines() if "exit signal" in ln]
    expect(not bad, "a worker died: %s" % bad[:3])


# ---------------------------------------------------- refusals and builds

def raw_request(port, head, timeout=10):
    """Send only head (no body); return (seconds to the answer, status,
    body)."""
    t0 = time.time()
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(head)
        data = b""
        while b"\r\n\r\n" not in data:
            d = s.recv(65536)
            if not d:
                break
            data += d
        head_end = data.find(b"\r\n\r\n")
        expect(head_end > 0, "no answer header: %r" % data[:200])
        status = int(data.split(b" ", 2)[1])
        dt = time.time() - t0
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                data += d
        except OSError:
            pass
        return dt, status, data[head_end + 4:]
    finally:
        s.close()


def case_body_refused_unread(h):
    """A POST body larger than JPIPMaxRequestBody (413) or of another type
    (415) is refused before it is read: the answer comes although the body
    is never sent, well before httpd's Timeout."""
    name = "ref-a.jp2"
    for ctype, length, want in (("application/x-www-form-urlencoded", 10 * 1024 * 1024, 413),
                                ("image/png", 100, 415)):
        head = ("POST /jpip/%s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\n"
                "Content-Length: %d\r\n\r\n" % (name, ctype, length)).encode()
        dt, st, body = raw_request(h.port, head, timeout=10)
        expect(st == want, "%s, %d bytes: %d, wanted %d" % (ctype, length, st, want))
        expect(dt < 5, "the answer took %.1f s" % dt)
        if want == 413:
            expect(b"JPIPMaxRequestBody" in body, "413 does not name the directive: %r" % body)


def case_unreadable_and_deleted(h, a):
    name = "locked.jp2"
    target = os.path.join(h.archive, name)
    shutil.copyfile(a, target)
    os.chmod(target, 0)
    st, _, body = get(h, "/jpip/%s?type=jpp-stream&fsiz=64,64" % name)
    expect(st == 403, "unreadable target: %d %r" % (st, jpp.error_text(body)[:200]))
    expect(name.encode() in body, "403 does not name the target: %r" % body)
    # a session whose target is deleted: 404 naming it, with or without
    # the target in the path
    name = "gone.jp2"
    target = os.path.join(h.archive, name)
    shutil.copyfile(a, target)
    os.chmod(target, 0o644)
    st, hd, _ = get(h, "/jpip/%s?type=jpp-stream&cnew=http&fsiz=64,64" % name)
    expect(st == 200 and "jpip-cnew" in hd, "cnew: %d" % st)
    cid = dict(i.split("=", 1) for i in hd["jpip-cnew"].split(","))["cid"]
    os.unlink(target)
    for path in ("/jpip/%s?cid=%s&fsiz=128,96" % (name, cid), "/jpip?cid=%s&fsiz=128,96" % cid):
        st, _, body = get(h, path)
        expect(st in (404, 410), "%s: %d %r" % (path, st, jpp.error_text(body)[:200]))
        expect(name.encode() in body, "%s: the answer does not name the target: %r"
               % (path, body))


def case_controls_escaped(h):
    """Control characters of a request are escaped in error answers."""
    for path in ("/jpip/no%01such%1b%5b31m.jp2?type=jpp-stream",
                 "/jpip/ref-a.jp2?type=jpp-stream&fsiz=1,%0d%0aX",
                 "/jpip?cid=%07%08bad&type=jpp-stream"):
        st, _, body = get(h, path)
        expect(st >= 400, "%s: %d" % (path, st))
        text = jpp.error_text(body)
        bad = [c for c in text if c < 0x20 and c != 0x0a or c == 0x7f]
        expect(not bad, "%s: raw control characters in the answer: %r" % (path, text))
        expect(text.count(b"\n") == 1, "%s: a line break from the request: %r" % (path, text))


def case_one_build_per_host(h, big):
    """Concurrent first requests for an un-indexed file, in several
    processes: it is indexed once."""
    name = "once.j2k"
    target = os.path.join(h.archive, name)
    shutil.copyfile(big, target)
    os.chmod(target, 0o644)
    before = h.error_log().count("jpip(target=%s): indexed" % name)
    results = []

    def one():
        try:
            results.append(get(h, "/jpip/%s?type=jpp-stream&fsiz=64,64" % name)[0])
        except OSError as e:
            results.append(e)

    threads = [threading.Thread(target=one) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    expect(results == [200] * 12, "answers: %s" % results)
    builds = h.error_log().count("jpip(target=%s): indexed" % name) - before
    expect(builds == 1, "indexed %d times" % builds)


# ------------------------------------------------------- len growth

def case_len_growth(h, large):
    """A session asking for the whole of a 3072x3072 image in growing len
    steps (as streaming clients do) at the default session limits: no EOR 6,
    no 503, it ends holding the whole image (the same request again sends
    nothing but the EOR), and no byte of it came twice (the messages'
    bytes add up to the image's)."""
    name = "large.j2k"
    target = os.path.join(h.archive, name)
    shutil.copyfile(large, target)
    os.chmod(target, 0o644)
    view = "fsiz=3072,3072"
    st, hd, body = get(h, "/jpip/%s?type=jpp-stream&cnew=http&%s&len=1000000" % (name, view))
    expect(st == 200 and "jpip-cnew" in hd, "cnew: %d" % st)
    items = dict(i.split("=", 1) for i in hd["jpip-cnew"].split(","))
    path = "/%s?cid=%s" % (items["path"].lstrip("/"), items["cid"])
    held = {}
    received = [0]

    def note(body):
        msgs, eor = jpp.parse(body)[0], jpp.parse(body)[1]
        for m in msgs:
            received[0] += m.len
            k = (m.cls & ~1, m.csn, m.id)
            expect(m.off <= held.get(k, 0), "a hole in bin %s" % (k,))
            held[k] = max(held.get(k, 0), m.off + m.len)
        return eor

    eor = note(body)
    n, length = 1, 1000000
    while eor not in (1, 2):
        expect(eor == 4, "request %d (len=%d) ended with EOR %s" % (n, length, eor))
        length = length * 3 // 2
        st, _, body = get(h, "%s&%s&len=%d" % (path, view, length))
        expect(st == 200, "request %d (len=%d): %d %r" % (n, length, st,
                                                          jpp.error_text(body)[:200]))
        eor = note(body)
        n += 1
        expect(n < 60, "no end after %d requests" % n)
    # the whole image is held: nothing is sent again
    st, _, body = get(h, "%s&%s" % (path, view))
    msgs, eor = jpp.parse(body)[0], jpp.parse(body)[1]
    expect(st == 200 and eor in (1, 2), "the last request: %d EOR %s" % (st, eor))
    expect(sum(m.len for m in msgs) == 0, "%d bytes sent again after the whole image"
           % sum(m.len for m in msgs))
    total = sum(held.values())
    st, _, ref = get(h, "/jpip/%s?type=jpp-stream&%s" % (name, view))
    want = sum(m.len for m in jpp.parse(ref)[0])
    expect(total == want, "the session holds %d bytes, the image is %d" % (total, want))
    expect(received[0] == want, "%d bytes received in %d answers for an image of %d: %d twice"
           % (received[0], n, want, received[0] - want))
    print("    (len growth: %d answers, %d bytes, none twice)" % (n, received[0]), flush=True)


# ------------------------------------------------------- slow readers

# The settings docs/security.md documents against clients that do not read
# (and send slowly): each is a line of it.
SLOW_READER_CONF = """
Timeout 5
RequestReadTimeout handshake=5 header=10-20,MinRate=500 body=10,MinRate=500
KeepAliveTimeout 5
ServerLimit 4
ThreadLimit 32
ThreadsPerChild 32
MaxRequestWorkers 128
JPIPRendition Off
"""


def case_slow_readers(h, big):
    """40 clients that ask for a large answer and never read do not starve
    the server: others are answered meanwhile, and the stalled connections
    are closed once Timeout passes without progress."""
    name = "slow.j2k"
    target = os.path.join(h.archive, name)
    shutil.copyfile(big, target)
    os.chmod(target, 0o644)
    expect(get(h, "/jpip/%s?type=jpp-stream&fsiz=64,64" % name)[0] == 200, "first request")
    stalled = []
    for _ in range(40):
        s = socket.create_connection(("127.0.0.1", h.port), timeout=30)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /jpip/%s?type=jpp-stream&fsiz=4096,4096 HTTP/1.1\r\nHost: x\r\n\r\n"
                  % name.encode())
        stalled.append(s)
    time.sleep(1.0)
    t0 = time.time()
    for i in range(10):
        st, _, _ = get(h, "/jpip/%s?type=jpp-stream&fsiz=128,128&roff=0,%d" % (name, i), timeout=10)
        expect(st == 200, "a request while 40 clients stall: %d" % st)
    dt = time.time() - t0
    expect(dt < 5, "10 requests took %.1f s while 40 clients stalled" % dt)
    # after Timeout without progress the server gives up on them
    time.sleep(5 + 3)
    closed = 0
    for s in stalled:
        s.settimeout(5)
        try:
            while True:
                d = s.recv(1 << 20)
                if not d:
                    closed += 1
                    break
        except OSError:
            closed += 1  # reset or timeout both end here; a timeout is not a close
        s.close()
    expect(closed == 40, "%d of 40 stalled connections closed by the server" % closed)


# ------------------------------------------------------------------- runs

def make_large():
    """3072x3072 RGB, 64x64 precincts, five quality layers: over 9000
    precinct bins, which a len-limited answer leaves partly held."""
    return encode("large.j2k", 3072, 3072, 4,
                  ["-n", "6", "-c", "[64,64]", "-b", "32,32", "-r", "80,40,20,10,5"])


def make_big():
    return encode("big.j2k", 4096, 4096, 3, ["-n", "7", "-c", "[64,64]"])


def server(mpm, rendition, extra=""):
    conf = extra + """
JPIPIndexCache "{root}/ixcache"
EnableMMAP On
EnableSendfile Off
""" + ("JPIPRenditionAfter 2\n" if rendition else "JPIPRendition Off\n")
    h = Httpd(os.environ["HTTPD"], os.environ["APXS"], os.environ["JPIP_MODULE"],
              os.path.join(os.environ["JPIP_SRCDIR"], "..", "..", "httpd-conf"),
              samples=None, servers=3, mpm=mpm, extra_conf=conf,
              extra_modules=[("reqtimeout_module", "mod_reqtimeout.so")])
    h.write_config()
    os.makedirs(os.path.join(h.root, "ixcache"), exist_ok=True)
    os.chmod(os.path.join(h.root, "ixcache"), 0o777)
    os.chmod(h.archive, 0o777)
    h.start()
    return h


ALLOWED = [r"JPIP03\d\d"]


def run_mpm(run, mpm, a, b, big, large):
    for rendition in (True, False):
        try:
            h = server(mpm, rendition)
        except Exception as e:  # noqa: BLE001
            run.case("%s: start httpd" % mpm, lambda: expect(False, str(e)))
            return
        try:
            run.case("%s: three processes" % mpm,
                     lambda: expect(len(h.children()) >= 3, "%d children" % len(h.children())))
            if rendition:
                run.case("%s: same size and mtime swaps, renamed and in place, and a graceful "
                         "restart" % mpm, case_swaps, h, a, b)
                run.case("%s: a session sees the new file" % mpm, case_session_sees_new_file,
                         h, a, b)
                run.case("%s: POST bodies refused before they are read (413, 415)" % mpm,
                         case_body_refused_unread, h)
                run.case("%s: unreadable target 403, deleted session target 404" % mpm,
                         case_unreadable_and_deleted, h, a)
                run.case("%s: control characters escaped in error answers" % mpm,
                         case_controls_escaped, h)
                run.case("%s: concurrent first requests index a file once" % mpm,
                         case_one_build_per_host, h, big)
                if mpm == "event":
                    run.case("%s: len growth to the whole 3072x3072 image at the default "
                             "session limits" % mpm, case_len_growth, h, large)
            else:
                for mode in ("truncate", "empty", "extend", "rewrite", "delete"):
                    run.case("%s: %s while streaming, EnableMMAP On: no worker dies"
                             % (mpm, mode), case_shrink, h, big, mode)
        finally:
            h.stop()
        run.case("%s: error log clean" % mpm,
                 lambda: expect(not h.bad_log_lines(ALLOWED),
                                "\n  ".join(h.bad_log_lines(ALLOWED)[:10])))
        h.cleanup()


def main():
    run = Runner()
    for tool in (os.environ.get("HTTPD"), OPJC):
        if not tool or shutil.which(tool) is None:
            print("skip - integrity cases: %s missing" % tool)
            return 0
    a, b = same_size_pair()
    big = make_big()
    large = make_large()
    for mpm in ("event", "prefork"):
        run_mpm(run, mpm, a, b, big, large)
    try:
        h = server("event", False, SLOW_READER_CONF)
    except Exception as e:  # noqa: BLE001
        run.case("slow readers: start httpd", lambda: expect(False, str(e)))
    else:
        try:
            run.case("event, as docs/security.md says: 40 clients that do not read do not "
                     "starve the server", case_slow_readers, h, big)
        finally:
            h.stop()
        run.case("slow readers: error log clean",
                 lambda: expect(not h.bad_log_lines(ALLOWED),
                                "\n  ".join(h.bad_log_lines(ALLOWED)[:10])))
        h.cleanup()
    shutil.rmtree(TMP, ignore_errors=True)
    return run.summary()


if __name__ == "__main__":
    sys.exit(main())
