"""mod_jpip integration cases against a live httpd (event MPM, >= 2 children).

Each case prints one line; the run ends with `N passed, N failed`.
Environment (set by tests/integration/Makefile.am): HTTPD, APXS, JPIP_MODULE,
JPIP_SAMPLES, JPIP_SRCDIR.
"""

import os
import subprocess
import sys
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


def case_spread_over_children(h):
    """Many requests, several connections: the module answers the same in
    every child (each child loaded the module and its configuration)."""
    name = sample_names(h)[0]
    for _ in range(40):
        st, _, _ = h.get("/jpip/" + name + "?fsiz=64,64")
        expect(st == 200, "status %d" % st)


def case_error_log_clean(h):
    bad = h.bad_log_lines()
    expect(not bad, "error log has:\n  " + "\n  ".join(bad[:10]))


def main():
    h = Httpd(env("HTTPD"), env("APXS"), env("JPIP_MODULE"), confdir(),
              samples=env("JPIP_SAMPLES"), servers=2)
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
            ("requests over many connections", case_spread_over_children),
        ]:
            run.case(name, fn, h)
    finally:
        h.stop()
    run.case("error log has no [error]/[crit]/exit signal lines", case_error_log_clean, h)
    h.cleanup()
    return run.summary()


if __name__ == "__main__":
    sys.exit(main())
