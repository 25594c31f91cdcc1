"""mod_jpip integration cases against a live httpd (event MPM, >= 2 children).

Each case prints one line; the run ends with `N passed, N failed`.
Environment (set by tests/integration/Makefile.am): HTTPD, APXS, JPIP_MODULE,
JPIP_SAMPLES, JPIP_SRCDIR.
"""

import concurrent.futures
import hashlib
import os
import shutil
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Httpd, Runner, Skip, expect  # noqa: E402


def env(name):
    v = os.environ.get(name)
    if not v:
        raise SystemExit("cases.py: %s is not set (run through `make check`)" % name)
    return v


def confdir():
    return os.path.join(env("JPIP_SRCDIR"), "..", "..", "httpd-conf")


def sample_names(h):
    names = sorted(n for n in os.listdir(h.archive) if n.endswith((".j2k", ".jp2"))
                   and not os.path.islink(os.path.join(h.archive, n)))
    if not names:
        raise Skip("the sample archive is empty")
    return names


# ------------------------------------------------------------------ cases
def case_children(h):
    kids = h.children()
    expect(len(kids) >= 2, "expected >= 2 httpd children, found %d" % len(kids))


def case_plain_page(h):
    st, hd, body = h.get("/")
    expect(st == 200, "status %d" % st)
    expect(hd.get("content-type", "").startswith("text/html"), "type %r" % hd.get("content-type"))
    expect(b"plain page" in body or b"sample site" in body, "unexpected body")


def is_jpp_headers_only(st, hd, body):
    """A 200 JPP-stream response that ends with an EOR."""
    return (st == 200 and hd.get("content-type") == "image/jpp-stream"
            and len(body) >= 3 and body[-3] == 0 and body[-1] == 0)


def case_existing_target(h):
    for name in sample_names(h):
        st, hd, body = h.get("/jpip/" + urllib.parse.quote(name) + "?type=jpp-stream")
        expect(is_jpp_headers_only(st, hd, body), "%s: status %d type %r" %
               (name, st, hd.get("content-type")))
        expect(body[-2] == 2, "%s: EOR %d, want 2 (window done)" % (name, body[-2]))


def case_target_field(h):
    name = sample_names(h)[0]
    st, hd, body = h.get("/jpip?target=" + urllib.parse.quote(name) + "&type=jpp-stream")
    expect(is_jpp_headers_only(st, hd, body), "status %d, body %r" % (st, body[:100]))


def case_missing_404(h):
    for path in ("/jpip/nope.jp2", "/jpip?target=nope.jp2", "/jpip/sub/dir/x.j2k"):
        st, _, body = h.get(path)
        expect(st == 404, "%s: status %d" % (path, st))
        expect(b"no such target" in body, "%s: body %r" % (path, body))


def case_directory_404(h):
    os.makedirs(os.path.join(h.archive, "subdir"), exist_ok=True)
    st, _, body = h.get("/jpip/subdir")
    expect(st == 404 and b"directory" in body, "status %d body %r" % (st, body))


def case_escape_403(h):
    link = os.path.join(h.archive, "escape.jp2")
    if not os.path.lexists(link):
        os.symlink(os.path.join(h.root, "httpd.conf"), link)
    paths = ["/jpip?target=../httpd.conf", "/jpip?target=..%2Fhttpd.conf",
             "/jpip?target=%2E%2E/%2E%2E/etc/passwd", "/jpip?target=a/../../httpd.conf",
             "/jpip/escape.jp2", "/jpip?target=escape.jp2"]
    for path in paths:
        st, _, body = h.get(path)
        expect(st == 403, "%s: status %d body %r" % (path, st, body))
        expect(h.root.encode() not in body, "%s: body reveals a server path" % path)


def case_method_405(h):
    for method in ("PUT", "DELETE", "PATCH"):
        st, hd, body = h.request(method, "/jpip/x.jp2", body=b"")
        expect(st == 405, "%s: status %d" % (method, st))
        expect("GET" in hd.get("allow", ""), "%s: Allow %r" % (method, hd.get("allow")))


def case_post_fields(h):
    name = sample_names(h)[0]
    st, hd, body = h.post("/jpip", ("target=%s&type=jpp-stream" % name).encode())
    expect(is_jpp_headers_only(st, hd, body), "status %d body %r" % (st, body[:100]))
    st, _, body = h.post("/jpip", b"target=nope.jp2")
    expect(st == 404, "missing target by POST: status %d" % st)


def case_post_too_large(h):
    st, _, body = h.post("/jpip", b"model=" + b"P0," * 40000)
    expect(st == 413, "status %d" % st)
    expect(b"JPIPMaxRequestBody" in body, "body %r" % body[:200])


def case_bad_fields_400(h):
    for q in ("target=a%zz", "fsiz=1,2&fsiz=3,4", "target=x%00.jp2"):
        st, _, body = h.get("/jpip?" + q)
        expect(st == 400, "%s: status %d" % (q, st))
        expect(len(body) > 0, "%s: empty body" % q)


def case_exports_only_module(h):
    out = subprocess.run(["nm", "-D", "--defined-only", env("JPIP_MODULE")],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise Skip("nm failed: " + out.stderr.strip())
    syms = [ln.split()[-1] for ln in out.stdout.splitlines() if ln.strip()]
    syms = [s for s in syms if s not in ("_init", "_fini", "_edata", "_end", "__bss_start")]
    expect(syms == ["jpip_module"], "exported: %s" % syms)


def log_pids(h, path):
    """The process ids that answered path, from the access log of
    REND_CONF (%P first)."""
    pids = []
    with open(os.path.join(h.logs, "rend.log")) as f:
        for line in f:
            parts = line.split(" ")
            if len(parts) > 4 and parts[4] == path:
                pids.append(int(parts[0]))
    return pids


def case_spread_over_children(h):
    """Many requests over many connections, several at a time: at least two
    children answer (the access log says which process did), and every
    answer is the same (each child loaded the module and its
    configuration)."""
    name = sample_names(h)[0]
    path = "/jpip/%s?fsiz=64,64&rsiz=64,64" % name
    kids = set(h.children())
    bodies = set()
    deadline = time.time() + 30
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        while True:
            for st, _, body in pool.map(lambda _: h.get(path), range(24)):
                expect(st == 200, "status %d" % st)
                bodies.add(body)
            pids = set(log_pids(h, path))
            if len(pids) >= 2 or time.time() > deadline:
                break
    kids |= set(h.children())  # the MPM may have started more under load
    expect(pids <= kids, "answered by %s, not httpd's children %s" % (sorted(pids), sorted(kids)))
    expect(len(pids) >= 2, "every answer came from process %s" % sorted(pids))
    expect(len(bodies) == 1, "the children answered %d different bodies" % len(bodies))


def first_image(h):
    names = [n for n in sample_names(h) if n.endswith(".j2k")]
    return names[0] if names else sample_names(h)[0]


def case_chunked_http11(h):
    name = first_image(h)
    st, hd, body = h.get("/jpip/%s?type=jpp-stream&fsiz=128,128" % name)
    expect(st == 200, "status %d" % st)
    expect(hd.get("transfer-encoding") == "chunked" and "content-length" not in hd,
           "HTTP/1.1 should be chunked: %r" % hd)
    expect("cache-control" not in hd, "a stateless response is cacheable: %r" % hd)


def case_content_length_http10(h):
    name = first_image(h)
    st11, _, body11 = h.get("/jpip/%s?type=jpp-stream&fsiz=128,128" % name)
    st, hd, body = h.get("/jpip/%s?type=jpp-stream&fsiz=128,128" % name, http10=True)
    expect(st == 200, "status %d" % st)
    expect(hd.get("content-length") == str(len(body)), "Content-Length %r for %d bytes" %
           (hd.get("content-length"), len(body)))
    expect(body == body11, "HTTP/1.0 and 1.1 bodies differ")


def case_content_length_always(h):
    name = first_image(h)
    for q in ("fsiz=128,128", "fsiz=256,256&len=3000", "metareq=[*]"):
        st, hd, body = h.get("/jpipcl/%s?type=jpp-stream&%s" % (name, q))
        expect(st == 200, "%s: status %d" % (q, st))
        expect(hd.get("content-length") == str(len(body)) and "transfer-encoding" not in hd,
               "%s: JPIPContentLength Always sent %r" % (q, hd))


def case_cors(h):
    name = first_image(h)
    origin = "https://viewer.example"
    st, hd, _ = h.get("/jpipcors/%s?fsiz=64,64&tid=0" % name, headers={"Origin": origin})
    expect(st == 200 and hd.get("access-control-allow-origin") == origin, "no CORS: %r" % hd)
    expect("JPIP-tid" in hd.get("access-control-expose-headers", ""), "JPIP-* not exposed")
    st, hd, _ = h.get("/jpipcors/%s?fsiz=64,64" % name, headers={"Origin": "https://evil.example"})
    expect("access-control-allow-origin" not in hd, "CORS for an origin not allowed")
    st, hd, _ = h.request("OPTIONS", "/jpipcors/%s" % name,
                          headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
    expect(st in (200, 204) and "POST" in hd.get("access-control-allow-methods", ""),
           "preflight: %d %r" % (st, hd))
    st, hd, _ = h.get("/jpip/%s?fsiz=64,64" % name, headers={"Origin": origin})
    expect("access-control-allow-origin" not in hd, "CORS where JPIPCORSOrigin is not set")


def case_h2c(h):
    name = first_image(h)
    url = "http://127.0.0.1:%d/jpip/%s?type=jpp-stream&fsiz=256,256" % (h.port, name)
    r = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "-o", "-", "-w",
                        "\n%{http_version} %{http_code}", url], capture_output=True)
    if r.returncode != 0:
        raise Skip("curl --http2-prior-knowledge failed: %d" % r.returncode)
    body, _, tail = r.stdout.rpartition(b"\n")
    expect(tail.decode() == "2 200", "HTTP/2 answer: %r" % tail)
    _, _, body11 = h.get("/jpip/%s?type=jpp-stream&fsiz=256,256" % name)
    expect(body == body11, "HTTP/2 and HTTP/1.1 bodies differ")


def case_modified_headers(h):
    """JPIP-* headers appear exactly when the served window differs (and
    JPIP-tid on every answer to a request that names no current tid)."""
    name = "sample.j2k"
    if not os.path.exists(os.path.join(h.archive, name)):
        raise Skip("sample.j2k not in the archive")
    cases = [("fsiz=1024,768", {}),                       # exact frame: nothing
             ("fsiz=512,384&roff=10,10&rsiz=100,100", {}),
             ("fsiz=1000,700", {"jpip-fsiz": "512,384"}),
             ("fsiz=1000,700,round-up", {"jpip-fsiz": "1024,768"}),
             ("fsiz=1024,768&roff=1000,700&rsiz=100,100", {"jpip-rsiz": "24,68"}),
             ("fsiz=1024,768&comps=1", {"jpip-comps": "0-2"}),
             ("fsiz=1024,768&layers=7", {"jpip-layers": "3"}),
             ("fsiz=64,48&tid=0", {"jpip-tid": None}),
             ("fsiz=64,48&qid=42", {"jpip-qid": "42"}),
             ("handled", {"jpip-handled": None})]
    for q, want in cases:
        want = dict(want, **{"jpip-tid": None})
        st, hd, _ = h.get("/jpip/%s?type=jpp-stream&%s" % (name, q))
        expect(st == 200, "%s: status %d" % (q, st))
        got = {k: v for k, v in hd.items() if k.startswith("jpip-")}
        expect(set(got) == set(want), "%s: JPIP headers %r, want %r" % (q, got, sorted(want)))
        for k, v in want.items():
            expect(v is None or got[k] == v, "%s: %s: %r, want %r" % (q, k, got[k], v))


def case_protocol_errors(h):
    name = first_image(h)
    for q, status, word in (("type=image/png", 415, b"return type"),
                            ("upload=jpp-stream", 501, b"upload"),
                            ("pref=fullwindow/r", 501, b"fullwindow"),
                            ("frobnicate=1", 400, b"frobnicate"),
                            ("roff=1,1", 400, b"fsiz"),
                            ("fsiz=64,64&model=Z9", 400, b"model"),
                            ("metareq=%5Bxml_", 400, b"metareq"),
                            ("cid=nosuchchannel", 503, b"channel")):
        st, _, body = h.get("/jpip/%s?%s" % (name, q))
        expect(st == status and word in body, "%s: %d %r" % (q, st, body[:120]))
    # a syntax error names no limit directive: none was reached
    for q in ("fsiz=64,64&model=Z9", "fsiz=64,64&need=Z9", "fsiz=64,64&model=P1-"):
        st, _, body = h.get("/jpip/%s?%s" % (name, q))
        expect(st == 400 and b"JPIPMax" not in body, "%s: %d %r" % (q, st, body[:160]))


REND_QUERIES = ("type=jpp-stream&fsiz=256,192",
                "type=jpp-stream&fsiz=1024,768&roff=300,200&rsiz=400,300",
                "type=jpp-stream&fsiz=512,384&layers=2",
                "type=jpp-stream&fsiz=1024,768&len=30000",
                "type=jpp-stream&fsiz=1024,768")


def rend_file(h, name):
    real = os.path.realpath(os.path.join(h.archive, name))
    return os.path.join(h.root, "run", "jpip-index",
                        hashlib.sha1(real.encode()).hexdigest() + ".jprd")


def rend_log(h):
    """(pid, rendition messages, messages, request line) per answer."""
    rows = []
    with open(os.path.join(h.logs, "rend.log")) as f:
        for line in f:
            pid, nr, nm, rest = line.rstrip("\n").split(" ", 3)
            if nr != "-":
                rows.append((int(pid), int(nr), int(nm), rest))
    return rows


def rendition_case(h, name, damaged, need_procs=1, h2=True):
    """A fresh copy of a sample: answers before its rendition exists, then
    the rendition is built once (one process, in the background), every
    process serves from it, and every answer stays byte for byte the
    same, over HTTP/1.1 and (h2: the server speaks h2c) HTTP/2."""
    src = os.path.join(h.archive, "sample.j2k")
    if not os.path.exists(src):
        raise Skip("sample.j2k not in the archive")
    shutil.copyfile(src, os.path.join(h.archive, name))
    os.chmod(os.path.join(h.archive, name), 0o644)
    rf = rend_file(h, name)
    if damaged:
        # left over, damaged: refused when mapped, then rebuilt
        os.makedirs(os.path.dirname(rf), exist_ok=True)
        with open(rf, "wb") as f:
            f.write(b"JPIPRND1" + b"\xff" * 4000)
    before = {}
    for q in REND_QUERIES:
        st, _, body = h.get("/jpip/%s?%s" % (name, q))
        expect(st == 200, "%s: status %d" % (q, st))
        before[q] = body
    # each process builds or maps it after JPIPRenditionAfter requests
    deadline = time.time() + 60
    built = []
    while time.time() < deadline:
        built = [ln for ln in h.error_log().splitlines()
                 if "rendition built" in ln and name in ln]
        if built:
            break
        h.get("/jpip/%s?type=jpp-stream&fsiz=64,48" % name)
        time.sleep(0.05)
    expect(len(built) == 1, "rendition built %d times: %r" % (len(built), built))
    expect(os.path.getsize(rf) > os.path.getsize(src), "rendition file %s too small" % rf)
    time.sleep(1.2)  # a process looks for it at most once a second
    for _ in range(3):
        for q in REND_QUERIES:
            st, _, body = h.get("/jpip/%s?%s" % (name, q))
            expect(st == 200 and body == before[q],
                   "%s: the answer changed once the rendition was there" % q)
    if h2:
        url = "http://127.0.0.1:%d/jpip/%s?%s" % (h.port, name, REND_QUERIES[4])
        r = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "-o", "-", "-w",
                            "\n%{http_version}", url], capture_output=True)
        expect(r.returncode == 0, "curl over HTTP/2 failed: exit %d" % r.returncode)
        body, _, version = r.stdout.rpartition(b"\n")
        expect(version == b"2", "curl spoke HTTP/%s, not HTTP/2" % version.decode())
        expect(body == before[REND_QUERIES[4]], "HTTP/2 answer differs with the rendition")
    # concurrent rounds: with prefork, overlapping requests are served by
    # different processes, and each maps the rendition (after
    # JPIPRenditionAfter requests, and within a second)
    path = "/jpip/%s?%s" % (name, REND_QUERIES[4])
    used = set()
    deadline = time.time() + (30 if need_procs > 1 else 0)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        while True:
            for st, _, body in pool.map(lambda _: h.get(path), range(32)):
                expect(st == 200 and body == before[REND_QUERIES[4]],
                       "concurrent answers changed with the rendition")
            rows = [x for x in rend_log(h) if x[3].startswith("GET " + path + " ")]
            used = {pid for pid, nr, nm, _ in rows if nr > nm // 2}
            if len(used) >= need_procs or time.time() > deadline:
                break
            time.sleep(0.2)
    expect(len(used) >= need_procs, "answers from the rendition came from %d process(es), "
           "want %d" % (len(used), need_procs))


def case_rendition(h):
    rendition_case(h, "rend-copy.j2k", damaged=False)


def case_rendition_damaged(h):
    rendition_case(h, "rend-damaged.j2k", damaged=True)


REND_CONF = """
LogFormat "%P %{{jpip-rendition-messages}}n %{{jpip-messages}}n %r" jpiprend
CustomLog "{root}/logs/rend.log" jpiprend
JPIPRenditionAfter 4
"""


def rendition_prefork(run):
    """Prefork with two processes: each maps the rendition one of them built."""
    h = Httpd(env("HTTPD"), env("APXS"), env("JPIP_MODULE"), confdir(),
              samples=env("JPIP_SAMPLES"), servers=2, mpm="prefork", extra_conf=REND_CONF)
    try:
        h.start()
    except Exception as e:  # noqa: BLE001
        run.case("prefork: start httpd", lambda: expect(False, str(e)))
        h.cleanup()
        return
    try:
        run.case("prefork: a rendition built by one process is used by the others",
                 rendition_case, h, "rend-prefork.j2k", False, 2, False)
    finally:
        h.stop()
    run.case("prefork: error log has no [error]/[crit]/exit signal lines", case_error_log_clean, h)
    h.cleanup()


def case_error_log_clean(h):
    bad = h.bad_log_lines()
    expect(not bad, "error log has:\n  " + "\n  ".join(bad[:10]))


def main():
    extra = REND_CONF + """
Protocols h2c http/1.1
<Location "/jpipcl">
    SetHandler jpip
    JPIPRoot "{archive}"
    JPIPContentLength Always
</Location>
<Location "/jpipcors">
    SetHandler jpip
    JPIPRoot "{archive}"
    JPIPCORSOrigin https://viewer.example https://other.example
</Location>
"""
    h = Httpd(env("HTTPD"), env("APXS"), env("JPIP_MODULE"), confdir(),
              samples=env("JPIP_SAMPLES"), servers=2, extra_conf=extra,
              extra_modules=[("http2_module", "mod_http2.so")])
    run = Runner()
    try:
        h.start()
    except Exception as e:  # noqa: BLE001
        print("FAIL - start httpd: %s" % e)
        h.cleanup()
        print("0 passed, 1 failed")
        return 1
    try:
        for name, fn in [
            ("httpd runs the event MPM with two or more children", case_children),
            ("plain page from the DocumentRoot", case_plain_page),
            ("renditions: built once in the background, answers unchanged",
             case_rendition),
            ("renditions: a damaged one is refused and rebuilt", case_rendition_damaged),
            ("existing target by path answers a JPP-stream", case_existing_target),
            ("existing target by target= answers a JPP-stream", case_target_field),
            ("missing target answers 404", case_missing_404),
            ("directory target answers 404", case_directory_404),
            ("escapes from JPIPRoot answer 403 without server paths", case_escape_403),
            ("other methods answer 405 with Allow", case_method_405),
            ("POST form body carries the fields", case_post_fields),
            ("POST body over JPIPMaxRequestBody answers 413", case_post_too_large),
            ("malformed fields answer 400", case_bad_fields_400),
            ("mod_jpip.so exports only jpip_module", case_exports_only_module),
            ("requests over many connections: two or more children answer, alike",
             case_spread_over_children),
            ("HTTP/1.1 responses are chunked", case_chunked_http11),
            ("HTTP/1.0 responses carry Content-Length", case_content_length_http10),
            ("JPIPContentLength Always", case_content_length_always),
            ("CORS and preflight as JPIPCORSOrigin allows", case_cors),
            ("HTTP/2 (h2c) gives the same body", case_h2c),
            ("JPIP-* headers exactly when the window is modified", case_modified_headers),
            ("protocol errors name the problem", case_protocol_errors),
        ]:
            run.case(name, fn, h)
    finally:
        h.stop()
    run.case("error log has no [error]/[crit]/exit signal lines", case_error_log_clean, h)
    h.cleanup()
    rendition_prefork(run)
    return run.summary()


if __name__ == "__main__":
    sys.exit(main())
