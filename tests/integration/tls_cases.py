"""mod_jpip over TLS and HTTP/2, and jpip-fetch's HTTP (libcurl).

httpd runs mod_ssl with a certificate this test makes with openssl, and
offers HTTP/2 (Protocols h2 http/1.1) on the TLS port. jpip-fetch fetches
windows over https:// (HTTP/2), and the images it rebuilds must decode
(openjpeg) to exactly the original's pixels over each window; a session's
requests, and --repeat's, must go over one kept-alive connection (the
access log records each request's client port and protocol); redirects
are followed; --user answers a Basic-authenticated location; http_proxy in
the environment sends the requests through a forward proxy (a second
virtual host of the same httpd, mod_proxy); a certificate nobody vouches
for is refused unless --cacert names it.

One line per case, then `N passed, N failed`.
Environment: HTTPD, APXS, JPIP_MODULE, JPIP_SAMPLES, JPIP_SRCDIR,
JPIP_FETCH, OPJ_DECOMPRESS.
"""

import base64
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Httpd, Runner, Skip, expect, free_port, modules_dir  # noqa: E402
import j2kgeom  # noqa: E402

FETCH = os.environ.get("JPIP_FETCH", "jpip-fetch")
OPJ = os.environ.get("OPJ_DECOMPRESS", "opj_decompress")
TMP = tempfile.mkdtemp(prefix="jpip-tls-")

MODULES = [("ssl_module", "mod_ssl.so"), ("socache_shmcb_module", "mod_socache_shmcb.so"),
           ("http2_module", "mod_http2.so"), ("alias_module", "mod_alias.so"),
           ("authn_core_module", "mod_authn_core.so"), ("authn_file_module", "mod_authn_file.so"),
           ("auth_basic_module", "mod_auth_basic.so"), ("authz_user_module", "mod_authz_user.so"),
           ("proxy_module", "mod_proxy.so"), ("proxy_http_module", "mod_proxy_http.so")]

CONF = """
LogFormat "%P %{{{{remote}}}}p %H %>s %r" jpipconn
Protocols h2c http/1.1
Listen 127.0.0.1:{tls}
<VirtualHost 127.0.0.1:{tls}>
    ServerName localhost
    SSLEngine on
    SSLCertificateFile "{cert}"
    SSLCertificateKeyFile "{key}"
    Protocols h2 http/1.1
    CustomLog "{{root}}/logs/tls.log" jpipconn
    Redirect 302 /moved/ /jpip/
</VirtualHost>
Listen 127.0.0.1:{proxy}
<VirtualHost 127.0.0.1:{proxy}>
    ProxyRequests On
    <Proxy "*">
        Require ip 127.0.0.1
    </Proxy>
    CustomLog "{{root}}/logs/proxy.log" jpipconn
</VirtualHost>
CustomLog "{{root}}/logs/plain.log" jpipconn
<Location "/jpipauth">
    SetHandler jpip
    JPIPRoot "{{archive}}"
    AuthType Basic
    AuthName "jpip"
    AuthUserFile "{{root}}/htpasswd"
    Require valid-user
</Location>
"""

USER, PASSWORD = "viewer", "s3cret pass"


def make_cert():
    key, cert = os.path.join(TMP, "key.pem"), os.path.join(TMP, "cert.pem")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                       capture_output=True)
    if r.returncode != 0:
        raise RuntimeError("openssl: %s" % r.stderr.decode(errors="replace")[-300:])
    return key, cert


def log_rows(h, name):
    """(pid, client port, protocol, status, request line) per request."""
    rows = []
    try:
        with open(os.path.join(h.logs, name)) as f:
            for line in f:
                pid, port, proto, st, req = line.rstrip("\n").split(" ", 4)
                rows.append((pid, port, proto, int(st), req))
    except OSError:
        pass
    return rows


def fetch(args, env=None):
    e = dict(os.environ)
    for k in ("http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy",
              "NO_PROXY"):
        e.pop(k, None)
    e.update(env or {})
    return subprocess.run([FETCH] + args, capture_output=True, timeout=300, env=e)


def decode(path, d, rg, out_dir):
    """PGX files of the codestream of path (out of its JP2 box: no colour
    conversion) at reduction d over region rg."""
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    raw = os.path.join(out_dir, "cs.j2k")
    with open(raw, "wb") as f:
        f.write(j2kgeom.codestream_bytes(open(path, "rb").read()))
    r = subprocess.run([OPJ, "-i", raw, "-o", os.path.join(out_dir, "c.pgx"), "-r", str(d),
                        "-d", "%d,%d,%d,%d" % rg], capture_output=True)
    files = sorted(glob.glob(os.path.join(out_dir, "c*.pgx")))
    if r.returncode != 0 or not files:
        return None
    return {os.path.basename(f): open(f, "rb").read() for f in files}


def pixel_exact(h, name, out, d, ox, oy, sx, sy):
    cs = j2kgeom.Codestream(open(os.path.join(h.archive, name), "rb").read())
    rg = cs.region(d, ox, oy, sx, sy)
    want = decode(os.path.join(h.archive, name), d, rg, os.path.join(TMP, "a"))
    if want is None:
        raise Skip("openjpeg cannot decode %s with -r %d -d %s" % (name, d, rg))
    got = decode(out, d, rg, os.path.join(TMP, "b"))
    expect(got == want, "%s: the image rebuilt from the answer differs over %s at -r %d"
           % (name, rg, d))


def window(cs, d, fx, fy, sx, sy):
    """fsiz/roff/rsiz fields for a window at fractions (fx, fy) of the frame
    at discard level d."""
    fw, fh = cs.frame(d)
    ox, oy = int(fw * fx), int(fh * fy)
    return ox, oy, min(sx, fw - ox), min(sy, fh - oy), fw, fh


def case_https_h2(h, tls, cert):
    """Windows of several files over https:// and HTTP/2, pixel-exact."""
    done = 0
    for name, d, fx, fy in (("precincts.jp2", 0, 0.3, 0.2), ("precincts.jp2", 1, 0.0, 0.5),
                            ("tiled.j2k", 0, 0.2, 0.3), ("sample.j2k", 2, 0.1, 0.1),
                            ("gray.jp2", 1, 0.5, 0.5)):
        path = os.path.join(h.archive, name)
        if not os.path.exists(path):
            continue
        cs = j2kgeom.Codestream(open(path, "rb").read())
        ox, oy, sx, sy, fw, fh = window(cs, d, fx, fy, 200, 150)
        out = os.path.join(TMP, "h2" + os.path.splitext(name)[1])
        url = ("https://127.0.0.1:%d/jpip/%s?type=jpp-stream&fsiz=%d,%d&roff=%d,%d&rsiz=%d,%d"
               % (tls, name, fw, fh, ox, oy, sx, sy))
        r = fetch(["-v", "--cacert", cert, "-o", out, url])
        err = r.stderr.decode(errors="replace")
        expect(r.returncode == 0, "%s: exit %d: %s" % (name, r.returncode, err[-300:]))
        expect("(HTTP/2)" in err, "%s: not HTTP/2: %s" % (name, err[:200]))
        pixel_exact(h, name, out, d, ox, oy, sx, sy)
        done += 1
    expect(done >= 3, "only %d files of the sample archive" % done)
    rows = [r for r in log_rows(h, "tls.log") if "/jpip/" in r[4]]
    expect(rows and all(r[2] == "HTTP/2.0" and r[3] == 200 for r in rows),
           "the TLS log says %r" % [(r[2], r[3]) for r in rows][:5])


def case_same_bytes(h, tls, cert):
    """The same answer over HTTPS + HTTP/2 as over plain HTTP/1.1."""
    q = "/jpip/precincts.jp2?type=jpp-stream&fsiz=1024,768&roff=100,200&rsiz=300,200"
    a, b = os.path.join(TMP, "a.jpp"), os.path.join(TMP, "b.jpp")
    r1 = fetch(["--cacert", cert, "--jpp", a, "https://127.0.0.1:%d%s" % (tls, q)])
    r2 = fetch(["--http1.1", "--jpp", b, "http://127.0.0.1:%d%s" % (h.port, q)])
    expect(r1.returncode == 0 and r2.returncode == 0, "exit %d, %d: %s %s"
           % (r1.returncode, r2.returncode, r1.stderr[-200:], r2.stderr[-200:]))
    expect(open(a, "rb").read() == open(b, "rb").read(), "HTTPS/2 and HTTP/1.1 answers differ")


def one_connection(rows, what):
    """All rows from one client port (one connection), and not none."""
    ports = {r[1] for r in rows}
    expect(rows, "%s: nothing in the log" % what)
    expect(len(ports) == 1, "%s: %d requests over %d connections (%s)"
           % (what, len(rows), len(ports), sorted(ports)))


def case_session_one_connection(h, tls, cert):
    """A session's requests (cnew, every window, cclose) go over one
    HTTP/2 connection, and the last window rebuilds pixel-exact."""
    name = "precincts.jp2"
    out = os.path.join(TMP, "sess.jp2")
    wins = ["1024,768,0,0,256,192", "1024,768,200,150,256,192", "512,384,100,100,200,150"]
    before = len(log_rows(h, "tls.log"))
    args = ["-v", "--cacert", cert, "--session", "-o", out]
    for w in wins:
        args += ["--window", w]
    r = fetch(args + ["https://127.0.0.1:%d/jpip/%s?type=jpp-stream" % (tls, name)])
    err = r.stderr.decode(errors="replace")
    expect(r.returncode == 0, "exit %d: %s" % (r.returncode, err[-300:]))
    expect("JPIP-cnew" in err and "over 1 connection(s)" in err, "no session, or more "
           "connections: %s" % err[-400:])
    rows = log_rows(h, "tls.log")[before:]
    expect(len(rows) == len(wins) + 1, "%d requests logged for %d windows and cclose"
           % (len(rows), len(wins)))
    expect(any("cclose=" in x[4] for x in rows), "no cclose request")
    one_connection(rows, "session")
    pixel_exact(h, name, out, 1, 100, 100, 200, 150)


def case_repeat_keepalive(h):
    """--repeat over plain HTTP/1.1: every len-limited request on one
    kept-alive connection, and the image complete at the end."""
    name = "tiled.j2k"
    out = os.path.join(TMP, "rep.j2k")
    path = "/jpip/%s?type=jpp-stream&fsiz=1024,768&roff=256,256&rsiz=400,300&len=15000" % name
    before = len(log_rows(h, "plain.log"))
    r = fetch(["-v", "--http1.1", "--repeat", "-o", out, "http://127.0.0.1:%d%s" % (h.port, path)])
    err = r.stderr.decode(errors="replace")
    expect(r.returncode == 0, "exit %d: %s" % (r.returncode, err[-300:]))
    rows = [x for x in log_rows(h, "plain.log")[before:] if x[4].startswith("GET /jpip/" + name)]
    expect(len(rows) >= 3, "only %d requests for len=15000" % len(rows))
    expect(all(x[2] == "HTTP/1.1" for x in rows), "not HTTP/1.1: %r" % {x[2] for x in rows})
    one_connection(rows, "--repeat")
    pixel_exact(h, name, out, 0, 256, 256, 400, 300)


def case_h2c(h):
    """--http2 on http:// (prior knowledge): HTTP/2 without TLS."""
    out = os.path.join(TMP, "h2c.j2k")
    before = len(log_rows(h, "plain.log"))
    r = fetch(["-v", "--http2", "-o", out, "http://127.0.0.1:%d/jpip/tiled.j2k"
               "?type=jpp-stream&fsiz=512,384&roff=100,100&rsiz=200,150" % h.port])
    err = r.stderr.decode(errors="replace")
    expect(r.returncode == 0 and "(HTTP/2)" in err, "exit %d: %s" % (r.returncode, err[-300:]))
    rows = log_rows(h, "plain.log")[before:]
    expect([x[2] for x in rows] == ["HTTP/2.0"], "the log says %r" % [x[2] for x in rows])
    pixel_exact(h, "tiled.j2k", out, 1, 100, 100, 200, 150)


def case_redirect(h, tls, cert):
    """A redirect (302 from /moved/ to /jpip/) is followed, query kept."""
    out = os.path.join(TMP, "moved.jp2")
    before = len(log_rows(h, "tls.log"))
    r = fetch(["-v", "--cacert", cert, "-o", out, "https://127.0.0.1:%d/moved/precincts.jp2"
               "?type=jpp-stream&fsiz=512,384&roff=64,64&rsiz=128,96" % tls])
    expect(r.returncode == 0, "exit %d: %s" % (r.returncode, r.stderr[-300:]))
    rows = log_rows(h, "tls.log")[before:]
    expect([x[3] for x in rows] == [302, 200], "statuses %r" % [x[3] for x in rows])
    pixel_exact(h, "precincts.jp2", out, 1, 64, 64, 128, 96)


def case_user(h, tls, cert):
    """--user for a Basic-authenticated location; without it, HTTP 401
    and exit status 1."""
    url = "https://127.0.0.1:%d/jpipauth/gray.jp2?type=jpp-stream&fsiz=320,240" % tls
    out = os.path.join(TMP, "auth.jp2")
    r = fetch(["--cacert", cert, "-o", out, url])
    expect(r.returncode == 1 and b"HTTP 401" in r.stderr, "without --user: exit %d %r"
           % (r.returncode, r.stderr[-200:]))
    r = fetch(["--cacert", cert, "--user", "%s:%s" % (USER, PASSWORD), "-o", out, url])
    expect(r.returncode == 0, "with --user: exit %d %r" % (r.returncode, r.stderr[-200:]))
    pixel_exact(h, "gray.jp2", out, 1, 0, 0, 320, 240)


def case_proxy(h, proxy):
    """http_proxy in the environment: the requests go through the proxy
    (its log has them, with the absolute URL), answers unchanged."""
    out = os.path.join(TMP, "proxied.j2k")
    path = "/jpip/sample.j2k?type=jpp-stream&fsiz=512,384&roff=100,50&rsiz=200,100"
    r = fetch(["-o", out, "http://127.0.0.1:%d%s" % (h.port, path)],
              env={"http_proxy": "http://127.0.0.1:%d" % proxy})
    expect(r.returncode == 0, "exit %d %r" % (r.returncode, r.stderr[-200:]))
    rows = [x for x in log_rows(h, "proxy.log") if "/jpip/sample.j2k" in x[4]]
    expect(rows and rows[-1][4].startswith("GET http://127.0.0.1:%d/jpip/" % h.port)
           and rows[-1][3] == 200, "the proxy log: %r" % rows[-1:])
    pixel_exact(h, "sample.j2k", out, 1, 100, 50, 200, 100)


def case_untrusted(h, tls, cert):
    """A certificate nobody vouches for: refused (exit 1) without --cacert;
    --insecure takes it."""
    url = "https://127.0.0.1:%d/jpip/gray.jp2?type=jpp-stream&fsiz=80,60" % tls
    out = os.path.join(TMP, "untrusted.jp2")
    r = fetch(["-o", out, url], env={"CURL_CA_BUNDLE": os.path.join(TMP, "none.pem"),
                                     "SSL_CERT_FILE": os.path.join(TMP, "none.pem")})
    expect(r.returncode == 1 and b"certificate" in r.stderr.lower(),
           "an unknown certificate: exit %d %r" % (r.returncode, r.stderr[-200:]))
    r = fetch(["--insecure", "-o", out, url])
    expect(r.returncode == 0, "--insecure: exit %d %r" % (r.returncode, r.stderr[-200:]))


def main():
    run = Runner()
    mdir = modules_dir(os.environ["APXS"])
    missing = [so for _, so in MODULES if not os.path.exists(os.path.join(mdir, so))]
    if missing or shutil.which("openssl") is None:
        run.case("TLS and HTTP/2", lambda: (_ for _ in ()).throw(
            Skip("missing: %s" % (missing or ["openssl"]))))
        return run.summary()
    try:
        key, cert = make_cert()
    except Exception as e:  # noqa: BLE001
        print("FAIL - certificate: %s" % e)
        print("0 passed, 1 failed")
        return 1
    tls, proxy = free_port(), free_port()
    h = Httpd(os.environ["HTTPD"], os.environ["APXS"], os.environ["JPIP_MODULE"],
              os.path.join(os.environ["JPIP_SRCDIR"], "..", "..", "httpd-conf"),
              samples=os.environ.get("JPIP_SAMPLES"), servers=2, extra_modules=MODULES,
              extra_conf=CONF.format(tls=tls, proxy=proxy, cert=cert, key=key))
    h.write_config()
    digest = base64.b64encode(hashlib.sha1(PASSWORD.encode()).digest()).decode()
    with open(os.path.join(h.root, "htpasswd"), "w") as f:
        f.write("%s:{SHA}%s\n" % (USER, digest))
    os.chmod(os.path.join(h.root, "htpasswd"), 0o644)
    try:
        h.start()
    except Exception as e:  # noqa: BLE001
        print("FAIL - start httpd: %s" % e)
        h.cleanup()
        print("0 passed, 1 failed")
        return 1
    try:
        run.case("https:// over HTTP/2: windows rebuilt pixel-exact", case_https_h2, h, tls, cert)
        run.case("the same bytes over HTTPS/2 as over HTTP/1.1", case_same_bytes, h, tls, cert)
        run.case("a session's requests over one HTTP/2 connection", case_session_one_connection,
                 h, tls, cert)
        run.case("--repeat over one kept-alive HTTP/1.1 connection", case_repeat_keepalive, h)
        run.case("--http2 speaks h2c on http://", case_h2c, h)
        run.case("redirects are followed", case_redirect, h, tls, cert)
        run.case("--user answers Basic authentication", case_user, h, tls, cert)
        run.case("http_proxy from the environment", case_proxy, h, proxy)
        run.case("an untrusted certificate is refused unless --insecure", case_untrusted, h, tls,
                 cert)
    finally:
        h.stop()
    run.case("error log has no [error]/[crit]/exit signal lines",
             lambda: expect(not h.bad_log_lines(), "\n  ".join(h.bad_log_lines()[:10])))
    h.cleanup()
    shutil.rmtree(TMP, ignore_errors=True)
    return run.summary()


if __name__ == "__main__":
    sys.exit(main())
