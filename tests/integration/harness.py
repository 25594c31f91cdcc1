"""mod_jpip integration harness: run a real httpd with the module from the
build tree in a temporary ServerRoot, and drive it over HTTP.

Python 3 standard library only. Used by cases.py (the test cases) and by
bootstrap.sh serve (through `python3 harness.py --serve`).
"""

import http.client
import os
import pwd
import grp
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

# Modules Debian's apache2 needs for our configurations (all shared).
BASE_MODULES = [
    ("mpm_event_module", "mod_mpm_event.so"),
    ("authz_core_module", "mod_authz_core.so"),
    ("authz_host_module", "mod_authz_host.so"),
    ("mime_module", "mod_mime.so"),
    ("dir_module", "mod_dir.so"),
    ("log_config_module", "mod_log_config.so"),
    ("unixd_module", None),  # built in on Debian; listed for clarity
]


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def modules_dir(apxs):
    out = subprocess.run([apxs, "-q", "LIBEXECDIR"], capture_output=True, text=True)
    return out.stdout.strip() or "/usr/lib/apache2/modules"


def module_has_iiif(module):
    """Whether the module has the IIIF Image API handler (SetHandler jpip-iiif)."""
    try:
        with open(module, "rb") as f:
            return b"jpip-iiif\0" in f.read()
    except OSError:
        return False


def viewer_conf(assets, iiif):
    """Directives for the example site's /jpip location: the viewer's assets
    from the build tree, and the IIIF location beside it when the module
    has one."""
    conf = '<Location "/jpip">\n    JPIPViewerAssets "%s"\n' % assets
    if iiif:
        conf += '    JPIPViewerIIIF /iiif\n'
    conf += '</Location>\n'
    if iiif:
        # JPIPIIIFMaxRenders' default (8) leaves room for a browser's 6 tiles at once
        conf += ('AllowEncodedSlashes NoDecode\n<Location "/iiif">\n    SetHandler jpip-iiif\n'
                 '    JPIPRoot "{archive}"\n'
                 '    Require all granted\n</Location>\n')
    return conf


def run_user():
    """User/Group for the children: httpd refuses to run them as root."""
    for user, group in (("www-data", "www-data"), ("nobody", "nogroup"), ("daemon", "daemon")):
        try:
            pwd.getpwnam(user)
            grp.getgrnam(group)
            return user, group
        except KeyError:
            continue
    raise RuntimeError("no unprivileged user for httpd's children")


class Httpd:
    """One httpd instance in a temporary ServerRoot.

    extra_conf is appended to the generated httpd.conf; use {root} for the
    ServerRoot, {archive} for the copied image archive, {docroot} for the
    DocumentRoot.
    """

    def __init__(self, httpd, apxs, module, confdir, samples=None, extra_conf="", port=None,
                 servers=2, mpm="event", keep=False, extra_files=(), extra_modules=(),
                 nofile=None, threads=8):
        self.httpd = httpd
        self.threads = threads  # event/worker MPM: threads per process
        self.nofile = nofile  # RLIMIT_NOFILE of httpd's processes (None: inherited)
        self.confdir = confdir
        self.apxs = apxs
        self.module = module
        self.samples = samples
        self.extra_conf = extra_conf
        self.port = port or free_port()
        self.servers = servers
        self.mpm = mpm
        self.keep = keep
        self.extra_files = list(extra_files)
        self.extra_modules = list(extra_modules)
        self.proc = None
        self.root = None

    # ---------------------------------------------------------- lifecycle
    def write_config(self):
        self.root = tempfile.mkdtemp(prefix="jpip-httpd-")
        os.chmod(self.root, 0o755)
        user, group = run_user()
        self.archive = os.path.join(self.root, "archive")
        self.docroot = os.path.join(self.root, "htdocs")
        self.logs = os.path.join(self.root, "logs")
        for d in (self.archive, self.docroot, self.logs, os.path.join(self.root, "run")):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o755)
        # Copy the archive so the unprivileged children can read it wherever
        # the build tree lives.
        srcs = []
        if self.samples and os.path.isdir(self.samples):
            srcs = [os.path.join(self.samples, n) for n in sorted(os.listdir(self.samples))]
        for src in srcs + self.extra_files:
            if os.path.isfile(src):
                dst = os.path.join(self.archive, os.path.basename(src))
                shutil.copyfile(src, dst)
                os.chmod(dst, 0o644)
        with open(os.path.join(self.docroot, "index.html"), "w") as f:
            f.write("<!doctype html>\n<title>mod_jpip sample site</title>\n"
                    "<h1>mod_jpip sample site</h1>\n"
                    "<p>This plain page is served by httpd from the DocumentRoot; the JPEG 2000 "
                    "archive beside it is served over JPIP at <code>/jpip/</code>.</p>\n<ul>\n")
            for name in sorted(os.listdir(self.archive)):
                f.write("<li><code>/jpip/%s</code></li>\n" % name)
            f.write("</ul>\n")
        shutil.copyfile(self.module, os.path.join(self.root, "mod_jpip.so"))
        mdir = modules_dir(self.apxs)
        loads = []
        mpm_mod = {"event": ("mpm_event_module", "mod_mpm_event.so"),
                   "prefork": ("mpm_prefork_module", "mod_mpm_prefork.so"),
                   "worker": ("mpm_worker_module", "mod_mpm_worker.so")}[self.mpm]
        for name, so in [mpm_mod] + BASE_MODULES[1:] + self.extra_modules:
            if so and os.path.exists(os.path.join(mdir, so)):
                loads.append("LoadModule %s %s/%s" % (name, mdir, so))
        if self.mpm == "prefork":
            # room for the parallel cases: a prefork process serves one
            # connection at a time
            mpm_conf = ("StartServers %d\nMinSpareServers %d\nMaxSpareServers %d\n"
                        "ServerLimit 48\nMaxRequestWorkers 48\n"
                        % (self.servers, self.servers, self.servers + 4))
        else:
            threads = self.threads
            limit = self.servers + 2
            mpm_conf = ("StartServers %d\nServerLimit %d\nThreadsPerChild %d\n"
                        "ThreadLimit %d\nMinSpareThreads %d\nMaxSpareThreads %d\n"
                        "MaxRequestWorkers %d\n"
                        % (self.servers, limit, threads, threads, threads,
                           threads * limit, threads * limit))
        conf = """# generated by the mod_jpip integration harness
ServerRoot "{root}"
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile "{root}/run/httpd.pid"
DefaultRuntimeDir "{root}/run"
Mutex file:{root}/run default
ErrorLog "{root}/logs/error.log"
LogLevel warn jpip:info
LogFormat "%h %>s %b \\"%r\\"" common
CustomLog "{root}/logs/access.log" common
User {user}
Group {group}
{loads}
LoadModule jpip_module "{root}/mod_jpip.so"
{mpm_conf}
TypesConfig /dev/null
AddType text/html .html
Define JPIP_DOCROOT "{docroot}"
Define JPIP_ARCHIVE "{archive}"
Include "{confdir}/jpip.conf"
Include "{confdir}/example-site.conf"
""".format(root=self.root, port=self.port, user=user, group=group,
           loads="\n".join(loads), mpm_conf=mpm_conf, docroot=self.docroot,
           archive=self.archive, confdir=self.confdir)
        conf += self.extra_conf.format(root=self.root, archive=self.archive,
                                       docroot=self.docroot, port=self.port)
        # $JPIP_HTTPD_CONF: directives added to every server a test starts,
        # so that whole suites run again under another output path (e.g.
        # EnableSendfile On, EnableMMAP Off; tests/integration/Makefile.am)
        if os.environ.get("JPIP_HTTPD_CONF"):
            conf += "\n# from $JPIP_HTTPD_CONF\n%s\n" % os.environ["JPIP_HTTPD_CONF"]
        self.conf = os.path.join(self.root, "httpd.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        return self.conf

    def start(self, timeout=20.0):
        if self.root is None:
            self.write_config()
        env = dict(os.environ)
        if os.environ.get("JPIP_SANITIZERS"):
            # the module is built with ASan/UBSan; httpd is not: load the
            # runtimes first. Leak checking is off (httpd frees its pools at
            # exit in ways LSan cannot follow across fork); reports go to
            # the error log, which bad_log_lines reads.
            libs = []
            for lib in ("libasan.so", "libubsan.so"):
                p = subprocess.run(["gcc", "-print-file-name=" + lib], capture_output=True,
                                   text=True).stdout.strip()
                if os.path.isabs(p) and os.path.exists(p):
                    libs.append(os.path.realpath(p))
            env["LD_PRELOAD"] = ":".join(libs)
            env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=0:halt_on_error=1"
            env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
            timeout *= 3
        check = subprocess.run([self.httpd, "-t", "-f", self.conf, "-d", self.root],
                               capture_output=True, text=True, env=env)
        if check.returncode != 0:
            raise RuntimeError("httpd -t failed:\n" + check.stdout + check.stderr)
        limit = None
        if self.nofile is not None:
            def limit():
                resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))
        self.proc = subprocess.Popen([self.httpd, "-DFOREGROUND", "-f", self.conf,
                                      "-d", self.root], env=env, preexec_fn=limit,
                                     stdin=subprocess.DEVNULL,
                                     # its own session: a graceful restart
                                     # signals httpd's whole process group
                                     start_new_session=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode(errors="replace")
                raise RuntimeError("httpd exited at start (%d):\n%s\n%s"
                                   % (self.proc.returncode, out, self.error_log()))
            try:
                st, _, _ = self.get("/")
                if st == 200 and len(self.children()) >= min(self.servers, 1):
                    # wait for all StartServers children
                    if len(self.children()) >= self.servers:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("httpd did not answer within %.0f s" % timeout)

    def stop(self, timeout=20.0):
        """Stop httpd (SIGTERM) and wait until it and its children exited."""
        if self.proc is None:
            return
        kids = self.children()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        deadline = time.time() + timeout
        while time.time() < deadline and any(os.path.exists("/proc/%d" % k) for k in kids):
            time.sleep(0.05)
        self.proc = None

    def cleanup(self):
        if self.root and not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def children(self):
        """PIDs of the httpd child processes (PPid == the parent)."""
        if self.proc is None:
            return []
        kids = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/status" % d) as f:
                    st = f.read()
            except OSError:
                continue
            m = re.search(r"^PPid:\s+(\d+)", st, re.M)
            if m and int(m.group(1)) == self.proc.pid:
                kids.append(int(d))
        return kids

    # ---------------------------------------------------------------- logs
    def error_log(self):
        try:
            with open(os.path.join(self.logs, "error.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def bad_log_lines(self, allowed=()):
        """Lines of the error log that a clean run must not have."""
        bad = []
        for line in self.error_log().splitlines():
            if (re.search(r"\[(\w+:)?(error|crit|alert|emerg)\]", line) or "exit signal" in line
                    or "AddressSanitizer" in line or "runtime error:" in line):
                if not any(re.search(a, line) for a in allowed):
                    bad.append(line)
        return bad

    # ---------------------------------------------------------------- HTTP
    def request(self, method, path, body=None, headers=None, http10=False, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        if http10:
            conn._http_vsn = 10
            conn._http_vsn_str = "HTTP/1.0"
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body, ctype="application/x-www-form-urlencoded", **kw):
        hdrs = {"Content-Type": ctype}
        hdrs.update(kw.pop("headers", {}) or {})
        return self.request("POST", path, body=body, headers=hdrs, **kw)


class Runner:
    """Runs named cases, prints one line each, and the closing summary."""

    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.skipped = 0

    def case(self, name, fn, *args):
        try:
            fn(*args)
        except Skip as e:
            self.skipped += 1
            print("skip - %s: %s" % (name, e), flush=True)
        except Exception as e:  # noqa: BLE001 - report any failure as a failed case
            self.failed += 1
            print("FAIL - %s: %s: %s" % (name, type(e).__name__, e), flush=True)
        else:
            self.passed += 1
            print("ok   - %s" % name, flush=True)

    def summary(self):
        line = "%d passed, %d failed" % (self.passed, self.failed)
        if self.skipped:
            line += ", %d skipped" % self.skipped
        print(line, flush=True)
        return 0 if self.failed == 0 else 1


class Skip(Exception):
    pass


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def serve_main(argv):
    """`harness.py --serve PORT SAMPLES CONF`: run httpd in the foreground
    with the example site configuration until interrupted."""
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--serve", action="store_true")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--httpd", required=True)
    ap.add_argument("--apxs", required=True)
    ap.add_argument("--module", required=True)
    ap.add_argument("--samples", required=True)
    ap.add_argument("--confdir", required=True)
    ap.add_argument("--viewer-assets", help="the build's viewer/dist")
    args = ap.parse_args(argv)
    iiif = module_has_iiif(args.module)
    extra = viewer_conf(args.viewer_assets, iiif) if args.viewer_assets else ""
    h = Httpd(args.httpd, args.apxs, args.module, args.confdir, samples=args.samples,
              port=args.port, extra_conf=extra)
    h.write_config()
    h.start()
    base = "http://127.0.0.1:%d" % h.port
    names = sorted(os.listdir(h.archive))
    if args.viewer_assets:
        print("Open the viewer in a browser:  %s/jpip/" % base)
    print("mod_jpip is serving %d images from a sample archive (ServerRoot %s)"
          % (len(names), h.root))
    print("  plain page:  %s/" % base)
    for n in names:
        if n.endswith((".j2k", ".jp2", ".jpx", ".j2c", ".jph")):
            print("  JPIP:        %s/jpip/%s?type=jpp-stream&fsiz=256,256" % (base, n))
    if iiif:
        for n in names:
            if n.endswith((".j2k", ".jp2", ".jpx", ".j2c", ".jph")):
                print("  IIIF:        %s/iiif/%s/info.json" % (base, n))
    print("  error log:   %s/logs/error.log" % h.root)
    print("Press Ctrl-C to stop.", flush=True)

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    try:
        while h.proc.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        h.stop()
        h.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(serve_main(sys.argv[1:]))
