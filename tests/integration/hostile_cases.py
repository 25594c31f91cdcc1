"""mod_jpip live hostile-input cases: malformed, truncated and bit-flipped
files, hostile requests, and every configured limit, against a live httpd.
Each answer must be a clean 4xx/5xx naming the problem or a valid stream,
within a time bound; no worker may die; a good file is served correctly
right after. One line per case, then `N passed, N failed`.
"""

import glob
import os
import random
import re
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Httpd, Runner, Skip, expect  # noqa: E402
import jpp  # noqa: E402

TIME_BOUND = 30  # seconds for any one answer


def valid_answer(st, hd, body, what):
    if st == 200:
        expect(hd.get("content-type", "").startswith("image/jp"), "%s: 200 of type %r" %
               (what, hd.get("content-type")))
        msgs, eor, trailing = jpp.parse(body)
        expect(eor is not None and trailing == 0, "%s: a 200 without a clean EOR" % what)
    else:
        expect(400 <= st < 600, "%s: status %d" % (what, st))
        expect(hd.get("content-type", "").startswith("text/plain") and len(body) > 10,
               "%s: %d without a text body naming the problem" % (what, st))


def timed_get(h, path):
    t0 = time.time()
    st, hd, body = h.get(path, timeout=TIME_BOUND + 5)
    expect(time.time() - t0 < TIME_BOUND, "%s took %.1f s" % (path, time.time() - t0))
    return st, hd, body


def good_file_ok(h):
    st, hd, body = h.get("/jpip/sample.j2k?type=jpp-stream&fsiz=256,192")
    expect(st == 200 and jpp.parse(body)[1] == 2, "the good file is not served after it")


def variants(conf_dir):
    """Truncations and bit flips of small conformance files (deterministic)."""
    rnd = random.Random(2026)
    out = []
    files = sorted(f for f in glob.glob(os.path.join(conf_dir, "*.j*"))
                   if os.path.getsize(f) < 400000)[:10]
    for f in files:
        data = open(f, "rb").read()
        base = os.path.basename(f)
        for frac in (0.01, 0.1, 0.5, 0.9, 0.999):
            out.append(("trunc%03d-%s" % (int(frac * 1000), base), data[:max(1, int(len(data) *
                                                                                   frac))]))
        for k in range(4):
            b = bytearray(data)
            for _ in range(1 + k * 3):
                pos = rnd.randrange(min(len(b), 4096 if k < 2 else len(b)))
                b[pos] ^= 1 << rnd.randrange(8)
            out.append(("flip%d-%s" % (k, base), bytes(b)))
    return out


def case_bad_files(h, names):
    for n in names:
        q = urllib.parse.quote(n)
        for fields in ("type=jpp-stream", "type=jpp-stream&fsiz=128,128",
                       "type=jpp-stream&fsiz=4096,4096&roff=10,10&rsiz=99,99",
                       "type=jpt-stream&fsiz=64,64", "metareq=%5B*%5D"):
            st, hd, body = timed_get(h, "/jpip/%s?%s" % (q, fields))
            valid_answer(st, hd, body, "%s?%s" % (n, fields))
        good_file_ok(h)


def case_path_tricks(h):
    os.symlink("/dev/zero", os.path.join(h.archive, "zero.j2k"))
    os.symlink("/etc/passwd", os.path.join(h.archive, "passwd.j2k"))
    os.mkfifo(os.path.join(h.archive, "fifo.j2k"))
    for path, want in (("/jpip?target=../httpd.conf", 403),
                       ("/jpip?target=..%2F..%2Fetc%2Fpasswd", 403),
                       ("/jpip?target=%2E%2E/httpd.conf", 403),
                       ("/jpip?target=/etc/passwd", 404),
                       ("/jpip?target=sub%2F..%2F..%2Fhttpd.conf", 403),
                       ("/jpip/zero.j2k?fsiz=8,8", 403),
                       ("/jpip/passwd.j2k?fsiz=8,8", 403),
                       ("/jpipfollow/zero.j2k?fsiz=8,8", 403),
                       ("/jpipfollow/passwd.j2k?fsiz=8,8", 415),
                       ("/jpip/fifo.j2k?fsiz=8,8", 403),
                       ("/jpip?target=%00", 400),
                       ("/jpip?target=a%5C..%5Cb", 400)):
        st, _, body = timed_get(h, path)
        expect(st == want, "%s: %d, want %d (%r)" % (path, st, want, body[:80]))
        expect(h.root.encode() not in body and b"/etc" not in body,
               "%s: the body reveals a server path" % path)


def case_numbers(h):
    for q in ("fsiz=99999999999,5", "fsiz=-1,5", "fsiz=5,5&roff=-3,0", "len=-1",
              "len=99999999999999999999999", "layers=4294967296", "qid=-7", "comps=1-0",
              "stream=4294967299", "fsiz=0,0", "fsiz=1e9,1"):
        st, _, body = timed_get(h, "/jpip/sample.j2k?%s" % q)
        expect(st == 400 and len(body) > 10, "%s: %d %r" % (q, st, body[:60]))
    # huge but well-formed values are served (clipped), not refused
    st, hd, body = timed_get(h, "/jpip/sample.j2k?fsiz=4294967295,4294967295&roff=4294967294,0"
                             "&rsiz=4294967295,4294967295")
    valid_answer(st, hd, body, "huge frame")


def case_limits(h):
    many = "&".join("f%d=1" % i for i in range(80))
    for path, body, want, word in (
            ("/jpip/sample.j2k?" + many, None, 413, b"JPIPMaxFields"),
            ("/jpiplimits/sample.j2k?fsiz=64,64&model=" + "P1," * 2000, None, 413,
             b"JPIPMaxFieldLength"),
            ("/jpiplimits/sample.j2k?fsiz=64,64&model=" + ",".join("P%d" % i for i in range(300)),
             None, 413, b"JPIPMaxModelItems"),
            ("/jpiplimits/sample.j2k?fsiz=1024,768", None, 413, b"JPIPMaxBins"),
            ("/jpip", b"target=sample.j2k&model=" + b"P0," * 30000, 413, b"JPIPMaxRequestBody")):
        if body is None:
            st, _, got = timed_get(h, path)
        else:
            st, _, got = h.post(path, body)
        expect(st == want and word in got, "%s...: %d %r" % (path[:50], st, got[:100]))
    st, hd, got = timed_get(h, "/jpiplimits/sample.j2k?type=jpp-stream&fsiz=64,48")
    expect(st == 200 and hd.get("jpip-len") == "3000" and len(got) <= 3003 and got[-2] in (2, 4),
           "JPIPMaxResponseBytes: %d %r %d" % (st, hd.get("jpip-len"), len(got)))


def slow_file():
    """A small codestream that takes a second or more to index: it claims
    a huge tile of 4x4 code-blocks (kept from fuzzing)."""
    p = os.path.join(os.environ["JPIP_SRCDIR"], "..", "fuzz", "corpus", "index",
                     "crash-timeout-4x4-cblks-huge-tile")
    if not os.path.exists(p):
        raise Skip("the slow-indexing input is not in the source tree")
    return p


def build_spans(log):
    """(start, end) in seconds of each "indexed in N ms" line of an error
    log: its time stamp is the end of the build."""
    spans = []
    for line in log.splitlines():
        m = re.search(r"^\[\w+ (\w+ +\d+ [\d:]+)\.(\d+) (\d+)\].*indexed in ([\d.]+) ms", line)
        if m:
            t = time.mktime(time.strptime(m.group(1) + " " + m.group(3), "%b %d %H:%M:%S %Y"))
            end = t + int(m.group(2)) / 10 ** len(m.group(2))
            spans.append((end - float(m.group(4)) / 1000.0, end))
    return spans


def case_builds_and_idle():
    """JPIPIndexMaxBuilds makes a second build in the same process wait for
    the first; JPIPSessionTimeout closes idle sessions (503 for the expired
    channel)."""
    slow = slow_file()
    h = Httpd(os.environ["HTTPD"], os.environ["APXS"], os.environ["JPIP_MODULE"],
              os.path.join(os.environ["JPIP_SRCDIR"], "..", "..", "httpd-conf"),
              samples=os.environ.get("JPIP_SAMPLES"), servers=1,
              extra_conf="\nJPIPIndexMaxBuilds 1\nJPIPIndexCache none\nJPIPSessionTimeout 1\n"
                         "<Location /jpipfast>\n SetHandler jpip\n JPIPRoot \"{archive}\"\n"
                         "</Location>\n")
    h.write_config()
    for n in ("slow1.j2k", "slow2.j2k"):
        dst = os.path.join(h.archive, n)
        with open(slow, "rb") as f, open(dst, "wb") as g:
            g.write(f.read())
        os.chmod(dst, 0o644)
    h.start()
    try:
        got = {}

        def first():
            got["a"] = h.get("/jpip/slow1.j2k?fsiz=8,8", timeout=120)

        t = threading.Thread(target=first)
        t.start()
        time.sleep(0.3)
        st, _, body = h.get("/jpip/slow2.j2k?fsiz=8,8", timeout=120)
        t.join()
        # with one build slot the second build waits for the first one: the
        # log says when each build ended and how long it took (not counting
        # the wait), so the two intervals must not overlap
        expect(got["a"][0] == 200 and st == 200, "builds: %d, %d" % (got["a"][0], st))
        spans = build_spans(h.error_log())
        expect(len(spans) == 2, "two builds logged: %r" % spans)
        (s1, e1), (s2, e2) = sorted(spans)
        expect(s2 >= e1 - 0.002, "the builds ran side by side: %.3f-%.3f and %.3f-%.3f s"
               % (s1 - s1, e1 - s1, s2 - s1, e2 - s1))
        st, hd, _ = h.get("/jpip/sample.j2k?cnew=http&fsiz=16,12")
        cid = dict(i.split("=", 1) for i in hd["jpip-cnew"].split(","))["cid"]
        time.sleep(2.5)
        h.get("/jpip/sample.j2k?cnew=http&fsiz=16,12")  # opening another expires idle ones
        st, _, body = h.get("/jpip?cid=%s&fsiz=16,12" % cid)
        expect(st == 503 and b"expired" in body, "idle session: %d %r" % (st, body[:80]))
    finally:
        h.stop()
        h.cleanup()

def case_index_time():
    """JPIPIndexMaxTime stops a long index build with 503 naming it."""
    slow = slow_file()
    h = Httpd(os.environ["HTTPD"], os.environ["APXS"], os.environ["JPIP_MODULE"],
              os.path.join(os.environ["JPIP_SRCDIR"], "..", "..", "httpd-conf"),
              samples=os.environ.get("JPIP_SAMPLES"), servers=1,
              extra_conf="\nJPIPIndexMaxTime 0.02\nJPIPIndexCache none\n")
    h.write_config()
    dst = os.path.join(h.archive, "slow.j2k")
    with open(slow, "rb") as f, open(dst, "wb") as g:
        g.write(f.read())
    os.chmod(dst, 0o644)
    h.start()
    try:
        st, _, body = h.get("/jpip/slow.j2k?fsiz=8,8", timeout=120)
        expect(st == 503 and b"JPIPIndexMaxTime" in body, "time limit: %d %r" %
               (st, body[:160]))
        st, _, _ = h.get("/jpip/sample.j2k?fsiz=64,48")
        expect(st == 200, "a quick file after it: %d" % st)
    finally:
        h.stop()
        h.cleanup()


def case_index_limits():
    """A server whose JPIPIndexMaxMemory is tiny refuses to index, with 503
    naming the directive, and stays healthy."""
    h = Httpd(os.environ["HTTPD"], os.environ["APXS"], os.environ["JPIP_MODULE"],
              os.path.join(os.environ["JPIP_SRCDIR"], "..", "..", "httpd-conf"),
              samples=os.environ.get("JPIP_SAMPLES"), servers=2,
              extra_conf="\nJPIPIndexMaxMemory 2K\nJPIPIndexCache none\n")
    h.start()
    try:
        st, _, body = timed_get(h, "/jpip/precincts.jp2?fsiz=64,64")
        expect(st == 503 and b"JPIPIndexMaxMemory" in body, "index limit: %d %r" %
               (st, body[:160]))
        st, _, _ = timed_get(h, "/")
        expect(st == 200, "the server is not healthy after it: %d" % st)
    finally:
        h.stop()
        h.cleanup()


def case_random_cids(h):
    rnd = random.Random(7)
    for _ in range(50):
        cid = "%032x" % rnd.getrandbits(128)
        st, _, body = timed_get(h, "/jpip?cid=%s&fsiz=64,64" % cid)
        expect(st == 503 and b"does not exist" in body, "random cid: %d" % st)
    for cid in ("", "x" * 300, "a%20b", "%00"):
        st, _, _ = timed_get(h, "/jpip?cid=%s" % cid)
        expect(st == 400, "cid %r: %d" % (cid[:10], st))


def case_abandoned_sessions(h):
    """Sessions opened and never closed: the per-client limit stops one
    client from taking them all; the table never grows past its size."""
    codes = []
    for _ in range(40):
        st, hd, _ = timed_get(h, "/jpip/sample.j2k?cnew=http&fsiz=16,12")
        codes.append(st)
    expect(codes.count(200) == 20 and codes[20:].count(503) == 20,
           "per-client limit: %r" % codes)
    st, _, body = timed_get(h, "/jpip/sample.j2k?cnew=http&fsiz=16,12")
    expect(st == 503 and b"JPIPMaxSessionsPerClient" in body, "%d %r" % (st, body[:100]))
    st, _, body = h.get("/jpip-status?json")
    import json
    expect(json.loads(body)["sessions"] <= 24, "sessions %s" % body)


def case_same_channel(h):
    """Simultaneous requests on one channel: every one answers (200 with
    an EOR, or 202 when overtaken), none fails, and no byte is sent twice."""
    st, hd, first = h.get("/jpip/precincts.jp2?cnew=http&fsiz=64,48", headers={})
    if st == 503:
        raise Skip("no session slot left for this client")
    cid = dict(i.split("=", 1) for i in hd["jpip-cnew"].split(","))["cid"]
    results = []

    def one(i):
        results.append(h.get("/jpip?cid=%s&fsiz=1024,768&roff=%d,0&rsiz=200,200" %
                             (cid, 100 * i), timeout=60))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seen = {}
    for st, hd, body in results:
        expect(st in (200, 202), "status %d" % st)
        if st == 200:
            msgs, eor, _ = jpp.parse(body)
            expect(eor in (1, 2, 3), "EOR %r" % eor)
            for m in msgs:
                k = (m.cls & ~1, m.id)
                for lo, hi in seen.get(k, []):
                    expect(m.off + m.len <= lo or hi <= m.off or m.len == 0, "twice: %r" % m)
                seen.setdefault(k, []).append((m.off, m.off + m.len))
    h.get("/jpip?cid=%s&cclose=*&len=0" % cid)


def main():
    data = os.environ.get("JPIP_TESTDATA", "")
    malformed = sorted(glob.glob(os.path.join(data, "malformed", "*")))
    extra = """
JPIPMaxSessionsPerClient 20
JPIPSessions 24
<Location "/jpip-status">
    SetHandler jpip-status
</Location>
<Location "/jpiplimits">
    SetHandler jpip
    JPIPRoot "{archive}"
    JPIPMaxFieldLength 4K
    JPIPMaxModelItems 100
    JPIPMaxBins 10
    JPIPMaxResponseBytes 3000
</Location>
<Location "/jpipfollow">
    SetHandler jpip
    JPIPRoot "{archive}"
    JPIPFollowOutsideLinks On
</Location>
"""
    h = Httpd(os.environ["HTTPD"], os.environ["APXS"], os.environ["JPIP_MODULE"],
              os.path.join(os.environ["JPIP_SRCDIR"], "..", "..", "httpd-conf"),
              samples=os.environ.get("JPIP_SAMPLES"), extra_files=malformed, servers=2,
              extra_conf=extra)
    h.write_config()
    bad_names = [os.path.basename(f) for f in malformed]
    conf = os.path.join(data, "conformance")
    if os.path.isdir(conf):
        for name, blob in variants(conf):
            with open(os.path.join(h.archive, name), "wb") as f:
                f.write(blob)
            os.chmod(os.path.join(h.archive, name), 0o644)
            bad_names.append(name)
    run = Runner()
    try:
        h.start()
    except Exception as e:  # noqa: BLE001
        print("FAIL - start httpd: %s" % e)
        print("0 passed, 1 failed")
        return 1
    try:
        if not malformed:
            run.case("malformed corpus", lambda: (_ for _ in ()).throw(
                Skip("not found (JPIP_TESTDATA=%r)" % data)))
        chunk = 12
        for i in range(0, len(bad_names), chunk):
            part = bad_names[i:i + chunk]
            run.case("bad files %s .. %s: clean answers, good file after" % (part[0], part[-1]),
                     case_bad_files, h, part)
        run.case("path tricks, devices, FIFOs and links", case_path_tricks, h)
        run.case("huge and negative numbers", case_numbers, h)
        run.case("each limit answers its status naming the directive", case_limits, h)
        run.case("random and malformed channel ids", case_random_cids, h)
        run.case("simultaneous requests on one channel", case_same_channel, h)
        run.case("many abandoned sessions", case_abandoned_sessions, h)
    finally:
        h.stop()
    run.case("no worker died, no [error]/[crit] lines",
             lambda: expect(not h.bad_log_lines(), "\n  ".join(h.bad_log_lines()[:10])))
    h.cleanup()
    run.case("index limits answer 503 naming the directive", case_index_limits)
    run.case("concurrent builds wait; idle sessions expire", case_builds_and_idle)
    run.case("JPIPIndexMaxTime stops a long build", case_index_time)
    return run.summary()


if __name__ == "__main__":
    sys.exit(main())
