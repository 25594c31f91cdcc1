"""mod_jpip's directives as httpd parses them, and its counters in
mod_status's server-status.

`httpd -t` on generated configurations: every numeric directive goes
through one strict parser, so trailing characters, signs, values out of
range and sizes that overflow are refused with a message naming the
directive; directives read once per process are refused inside a
<VirtualHost>. The documented forms (K, M, G and T sizes, decimal seconds,
httpd's ms/s/mi/h times) are accepted, and a server started with small
limits written in those forms enforces them (so the value parsed is the
value meant). With mod_status loaded, server-status (HTML and ?auto) shows
the JPIP counters beside httpd's own, with the same figures as the
jpip-status handler.

One line per case, then `N passed, N failed`.
Environment: HTTPD, APXS, JPIP_MODULE, JPIP_SAMPLES, JPIP_SRCDIR.
"""

import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Httpd, Runner, Skip, expect, modules_dir  # noqa: E402


def env(name):
    v = os.environ.get(name)
    if not v:
        raise SystemExit("config_cases.py: %s is not set (run through `make check`)" % name)
    return v


def confdir():
    return os.path.join(env("JPIP_SRCDIR"), "..", "..", "httpd-conf")


def httpd_env():
    """httpd's environment: with a sanitized module, the runtimes preloaded."""
    e = dict(os.environ)
    if os.environ.get("JPIP_SANITIZERS"):
        libs = []
        for lib in ("libasan.so", "libubsan.so"):
            p = subprocess.run(["gcc", "-print-file-name=" + lib], capture_output=True,
                               text=True).stdout.strip()
            if os.path.isabs(p) and os.path.exists(p):
                libs.append(os.path.realpath(p))
        e["LD_PRELOAD"] = ":".join(libs)
        e["ASAN_OPTIONS"] = "detect_leaks=0"
    return e


def location(lines):
    return ('<Location "/conf">\n    SetHandler jpip\n    JPIPRoot "{archive}"\n    %s\n'
            '</Location>\n' % "\n    ".join(lines))


def vhost(lines):
    return "<VirtualHost 127.0.0.1:{port}>\n    %s\n</VirtualHost>\n" % "\n    ".join(lines)


def check(extra):
    """httpd -t on the base configuration plus extra: (exit code, output)."""
    h = Httpd(env("HTTPD"), env("APXS"), env("JPIP_MODULE"), confdir(), extra_conf=extra)
    try:
        h.write_config()
        r = subprocess.run([env("HTTPD"), "-t", "-f", h.conf, "-d", h.root],
                           capture_output=True, text=True, env=httpd_env())
        return r.returncode, r.stdout + r.stderr
    finally:
        h.cleanup()


# (configuration text, directive the message must name, words it must hold)
REFUSED = [
    ("JPIPSessions 12abc", "JPIPSessions", "characters after"),
    ('JPIPSessions "12 "', "JPIPSessions", "characters after"),
    ("JPIPSessions -3", "JPIPSessions", "negative"),
    ("JPIPSessions 0", "JPIPSessions", "out of range"),
    ("JPIPSessions 99999999999999999999999", "JPIPSessions", "too large"),
    ("JPIPSessions 1.5", "JPIPSessions", "characters after"),
    ("JPIPSessions 0x10", "JPIPSessions", "characters after"),
    ("JPIPSessionMemory 99999999999999999999T", "JPIPSessionMemory", "too large"),
    ("JPIPSessionMemory 16777216T", "JPIPSessionMemory", "too large"),  # 2^64
    ("JPIPSessionMemory 2048T", "JPIPSessionMemory", "out of range"),
    ("JPIPSessionMemory 64MB", "JPIPSessionMemory", "characters after"),
    ("JPIPSessionMemory 64X", "JPIPSessionMemory", "unknown unit"),
    ("JPIPSessionMemory -64M", "JPIPSessionMemory", "negative"),
    ("JPIPIndexMaxMemory 99999999999999999999T", "JPIPIndexMaxMemory", "too large"),
    ("JPIPIndexMaxMemory 0", "JPIPIndexMaxMemory", "out of range"),
    ("JPIPIndexMaxTime 5x", "JPIPIndexMaxTime", "unknown unit"),
    ("JPIPIndexMaxTime -1", "JPIPIndexMaxTime", "negative"),
    ("JPIPIndexMaxTime 0.0001", "JPIPIndexMaxTime", "out of range"),
    ("JPIPIndexMaxTime 25h", "JPIPIndexMaxTime", "out of range"),
    ("JPIPIndexMaxTime 99999999999999999999h", "JPIPIndexMaxTime", None),
    ("JPIPSessionTimeout 30sx", "JPIPSessionTimeout", "unknown unit"),
    ("JPIPSessionTimeout 500ms", "JPIPSessionTimeout", "out of range"),
    ("JPIPIndexMaxBuilds 2b", "JPIPIndexMaxBuilds", "characters after"),
    ("JPIPIndexCacheEntries 1e3", "JPIPIndexCacheEntries", "characters after"),
    ("JPIPRenditionAfter -8", "JPIPRenditionAfter", "negative"),
    ("JPIPMaxSessionsPerClient -5", "JPIPMaxSessionsPerClient", "negative"),
    ("JPIPIIIFHeapRetain 65M", "JPIPIIIFHeapRetain", "out of range"),
    ("JPIPIIIFHeapRetain 16MB", "JPIPIIIFHeapRetain", "characters after"),
    (location(["JPIPIIIFHeapRetain 16M"]), "JPIPIIIFHeapRetain", None),
    (location(["JPIPMaxFields 64k"]), "JPIPMaxFields", "characters after"),
    (location(["JPIPMaxFields -1"]), "JPIPMaxFields", "negative"),
    (location(["JPIPMaxFieldLength 4KB"]), "JPIPMaxFieldLength", "characters after"),
    (location(["JPIPMaxModelItems 12abc"]), "JPIPMaxModelItems", "characters after"),
    (location(["JPIPMaxBins 99999999999999999999"]), "JPIPMaxBins", "too large"),
    (location(["JPIPMaxRequestBody 65M"]), "JPIPMaxRequestBody", "out of range"),
    (location(["JPIPMaxResponseBytes -1"]), "JPIPMaxResponseBytes", "negative"),
    (location(["JPIPFollowOutsideLinks maybe"]), "JPIPFollowOutsideLinks", None),
    (location(["JPIPContentLength sometimes"]), "JPIPContentLength", None),
]

# read once per process: refused in a virtual host
GLOBAL = [("JPIPIndexCacheEntries", "16"), ("JPIPIndexMaxBuilds", "1"), ("JPIPSessions", "8"),
          ("JPIPSessionMemory", "1M"), ("JPIPSessionTimeout", "60"), ("JPIPRendition", "Off"),
          ("JPIPRenditionAfter", "2"), ("JPIPMaxSessionsPerClient", "4"),
          ("JPIPIIIFHeapRetain", "8M")]

# every documented form
ACCEPTED = [
    "JPIPSessions 8", "JPIPSessions 007", "JPIPSessionMemory 65536", "JPIPSessionMemory 64k",
    "JPIPSessionMemory 2M", "JPIPSessionMemory 1G", "JPIPSessionMemory 1T",
    "JPIPIndexMaxMemory 2K", "JPIPIndexMaxMemory 512m", "JPIPIndexMaxMemory 4g",
    "JPIPIndexMaxTime 120", "JPIPIndexMaxTime 0.02", "JPIPIndexMaxTime 500ms",
    "JPIPIndexMaxTime 2mi", "JPIPIndexMaxTime 1h", "JPIPIndexMaxTime 30s",
    "JPIPSessionTimeout 300", "JPIPSessionTimeout 5mi", "JPIPSessionTimeout 1h",
    "JPIPIndexMaxBuilds 1", "JPIPIndexCacheEntries 1000000", "JPIPRendition Off",
    "JPIPRenditionAfter 1", "JPIPMaxSessionsPerClient 0", "JPIPIIIFHeapRetain 0",
    "JPIPIIIFHeapRetain 64M",
    location(["JPIPMaxFields 1", "JPIPMaxFieldLength 4K", "JPIPMaxModelItems 100",
              "JPIPMaxBins 1099511627776", "JPIPMaxRequestBody 0", "JPIPMaxResponseBytes 0",
              "JPIPMaxResponseBytes 3M", "JPIPFollowOutsideLinks On",
              "JPIPContentLength Always"]),
    # per-server directives may differ in a virtual host
    vhost(["JPIPIndexMaxMemory 256M", "JPIPIndexMaxTime 10", "JPIPIndexCache none"]),
]


def case_refused():
    for conf, name, words in REFUSED:
        rc, out = check("\n" + conf + "\n")
        expect(rc != 0, "accepted: %r" % conf)
        expect(name in out, "%r: the message does not name %s: %s" % (conf, name, out))
        if words:
            expect(words in out, "%r: the message does not say %r: %s" % (conf, words, out))


def case_global_in_vhost():
    for name, value in GLOBAL:
        conf = vhost(["%s %s" % (name, value)])
        rc, out = check("\n" + conf)
        expect(rc != 0, "%s accepted in a <VirtualHost>" % name)
        expect(name in out and "VirtualHost" in out, "%s: %s" % (name, out))
        # and the same line is fine in the main server
        rc, out = check("\n%s %s\n" % (name, value))
        expect(rc == 0, "%s %s refused in the main server: %s" % (name, value, out))


def case_accepted():
    for conf in ACCEPTED:
        rc, out = check("\n" + conf + "\n")
        expect(rc == 0, "refused: %r: %s" % (conf, out))


def case_values_in_force():
    """Limits written with suffixes are the values meant."""
    conf = "\nJPIPSessionTimeout 5mi\nJPIPIndexMaxTime 500ms\nJPIPSessionMemory 2M\n" + location(
        ["JPIPMaxFieldLength 1k", "JPIPMaxRequestBody 2K", "JPIPMaxFields 4"]).replace(
        "</Location>", "    Require all granted\n</Location>")
    h = Httpd(env("HTTPD"), env("APXS"), env("JPIP_MODULE"), confdir(),
              samples=env("JPIP_SAMPLES"), extra_conf=conf, servers=1)
    try:
        h.start()
        ok = "/conf/sample.j2k?type=jpp-stream&fsiz=64,64"
        st, _, body = h.get(ok)
        expect(st == 200, "plain request: %d %r" % (st, body[:120]))
        # 1k: a field of 1024 bytes passes the limit, one of 1025 does not
        pad = "&x=" + "a" * (1024 - 2)
        st, _, body = h.get(ok + pad)
        expect(st != 413, "a 1024-byte field refused under 1k: %d %r" % (st, body[:120]))
        st, _, body = h.get(ok + pad + "a")
        expect(st == 413 and b"JPIPMaxFieldLength" in body,
               "a 1025-byte field: %d %r" % (st, body[:120]))
        # 2K: a POST body of 2049 bytes is refused, naming the directive
        body_ok = "target=sample.j2k&type=jpp-stream&fsiz=64,64"
        st, _, body = h.post("/conf", body_ok)
        expect(st == 200, "POST: %d %r" % (st, body[:120]))
        st, _, body = h.post("/conf", body_ok + "&" + "b" * (2049 - len(body_ok) - 1))
        expect(st == 413 and b"JPIPMaxRequestBody" in body,
               "a 2049-byte body: %d %r" % (st, body[:120]))
        st, _, body = h.get(ok + "&a=1&b=2&c=3")
        expect(st == 413 and b"JPIPMaxFields" in body, "5 fields: %d %r" % (st, body[:120]))
        bad = h.bad_log_lines()
        expect(not bad, "error log: %r" % bad)
    finally:
        h.stop()
        h.cleanup()


STATUS_CONF = """
<Location "/server-status">
    SetHandler server-status
    Require all granted
</Location>
"""


def case_server_status():
    if not os.path.exists(os.path.join(modules_dir(env("APXS")), "mod_status.so")):
        raise Skip("mod_status.so not installed")
    h = Httpd(env("HTTPD"), env("APXS"), env("JPIP_MODULE"), confdir(),
              samples=env("JPIP_SAMPLES"), extra_conf=STATUS_CONF, servers=2,
              extra_modules=[("status_module", "mod_status.so")])
    try:
        h.start()
        n = 5
        for i in range(n):
            st, _, _ = h.get("/jpip/sample.j2k?type=jpp-stream&fsiz=%d,%d" % (32 << (i % 3),
                                                                            32 << (i % 3)))
            expect(st == 200, "request %d: %d" % (i, st))
        st, hd, _ = h.get("/jpip/sample.j2k?type=jpp-stream&fsiz=64,64&cnew=http")
        expect(st == 200 and "jpip-cnew" in hd, "cnew: %d %r" % (st, hd))
        st, _, auto = h.get("/server-status?auto")
        expect(st == 200, "server-status?auto: %d" % st)
        lines = dict(l.split(": ", 1) for l in auto.decode().splitlines() if ": " in l)
        # httpd's own lines, then ours
        expect("BusyWorkers" in lines and "ServerUptimeSeconds" in lines,
               "httpd's own counters missing: %r" % auto[:300])
        expect(lines.get("JPIPVersion"), "no JPIPVersion: %r" % auto)
        expect(lines.get("JPIPRequests") == str(n + 1), "JPIPRequests %r after %d requests"
               % (lines.get("JPIPRequests"), n + 1))
        expect(lines.get("JPIPSessionsOpen") == "1" and lines.get("JPIPSessionsCreated") == "1",
               "sessions: %r" % auto)
        expect(int(lines.get("JPIPBytesSent", "0")) > 0, "bytes sent: %r" % auto)
        # the jpip-status handler is still there, with the same figures
        st, _, js = h.get("/jpip-status?json")
        expect(st == 200, "jpip-status: %d" % st)
        j = json.loads(js)
        for key, name in (("requests", "JPIPRequests"), ("sessions", "JPIPSessionsOpen"),
                          ("session_slots", "JPIPSessionSlots"),
                          ("bytes_sent", "JPIPBytesSent"),
                          ("index_cache_hits", "JPIPIndexCacheHits"),
                          ("index_cache_misses", "JPIPIndexCacheMisses")):
            expect(str(j[key]) == lines.get(name), "%s %r, %s %r" % (key, j[key], name,
                                                                     lines.get(name)))
        st, _, html = h.get("/server-status")
        expect(st == 200, "server-status: %d" % st)
        html = html.decode()
        expect("Server uptime" in html or "Server Version" in html, "not mod_status's page")
        m = re.search(r"<th[^>]*>requests</th><td[^>]*>(\d+)</td>", html)
        expect("mod_jpip" in html and m and m.group(1) == str(n + 1),
               "no JPIP table in server-status: %r" % html[-800:])
        bad = h.bad_log_lines()
        expect(not bad, "error log: %r" % bad)
    finally:
        h.stop()
        h.cleanup()


def main():
    run = Runner()
    run.case("malformed numbers and sizes are refused naming the directive", case_refused)
    run.case("directives read once per process are refused in a <VirtualHost>",
             case_global_in_vhost)
    run.case("every documented form is accepted", case_accepted)
    run.case("values written with suffixes are the values in force", case_values_in_force)
    run.case("server-status shows the JPIP counters beside httpd's", case_server_status)
    return run.summary()


if __name__ == "__main__":
    sys.exit(main())
