"""Headless Chromium driven over the DevTools protocol, Python standard
library only (a small WebSocket client included), for the viewer's browser
tests (viewer_cases.py). Nothing is downloaded: it runs the browser the
system has (Debian's `chromium`), on loopback only.

    with Browser() as b:
        page = b.page(width=900, height=600)
        page.goto("http://127.0.0.1:8080/jpip/")
        page.eval("document.title")
        png = page.screenshot(x, y, w, h)     # PNG bytes
        page.errors()                         # console errors, exceptions, CSP reports

decode_png(data) -> (width, height, channels, bytes) reads the screenshots.
"""

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
import zlib

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def find_browser():
    """The browser's path, from $CHROMIUM or the PATH; None when there is none."""
    env = os.environ.get("CHROMIUM")
    if env:
        return env if os.path.exists(env) else None
    for name in BROWSERS:
        p = shutil.which(name)
        if p:
            return p
    return None


class WebSocket:
    """A client WebSocket (RFC 6455) on a loopback TCP connection: text
    frames out (masked), text frames in (fragments joined), ping answered."""

    def __init__(self, url, timeout=60):
        assert url.startswith("ws://")
        hostport, _, path = url[5:].partition("/")
        host, _, port = hostport.partition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        req = ("GET /%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, hostport, key))
        self.sock.sendall(req.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise OSError("the browser closed the DevTools connection")
            head += chunk
        head, _, self.buf = head.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise OSError("no WebSocket upgrade: %r" % head[:200])

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self.buf)))
            if not chunk:
                raise OSError("the browser closed the DevTools connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _send_frame(self, opcode, payload):
        head = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + body)

    def send(self, text):
        self._send_frame(0x1, text.encode())

    def recv(self):
        parts = []
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            data = self._read(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            op = b0 & 0x0F
            if op == 0x9:
                self._send_frame(0xA, data)
                continue
            if op == 0x8:
                raise OSError("the browser closed the DevTools connection")
            if op in (0x1, 0x2, 0x0):
                parts.append(data)
                if b0 & 0x80:
                    return b"".join(parts).decode()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Page:
    """One tab: commands, and the events they caused."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0
        self.events = []
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(domain + ".enable")

    def call(self, method, timeout=60, **params):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        deadline = time.time() + timeout
        while time.time() < deadline:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)
        raise TimeoutError(method)

    def pump(self, seconds):
        """Collect events for a while (a harmless command keeps the socket busy)."""
        end = time.time() + seconds
        while time.time() < end:
            self.call("Runtime.evaluate", expression="1")
            time.sleep(0.05)

    def goto(self, url, timeout=30):
        self.events = []
        self.call("Page.navigate", url=url)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(e["method"] == "Page.loadEventFired" for e in self.events):
                return
            msg = json.loads(self.ws.recv())
            if "method" in msg:
                self.events.append(msg)
        raise TimeoutError("page did not load: %s" % url)

    def eval(self, expr, await_promise=False):
        res = self.call("Runtime.evaluate", expression=expr, returnByValue=True,
                        awaitPromise=await_promise)
        if "exceptionDetails" in res:
            raise RuntimeError("script failed: %s: %s" % (expr[:80], res["exceptionDetails"]))
        return res["result"].get("value")

    def wait_for(self, expr, timeout=30, what=None):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.eval(expr):
                return
            time.sleep(0.1)
        raise TimeoutError("timed out waiting for %s" % (what or expr))

    def screenshot(self, x=None, y=None, w=None, h=None, scale=1):
        params = {"format": "png"}
        if x is not None:
            params["clip"] = {"x": x, "y": y, "width": w, "height": h, "scale": scale}
        return base64.b64decode(self.call("Page.captureScreenshot", **params)["data"])

    def click(self, x, y):
        for t in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=t, x=x, y=y, button="left",
                      clickCount=1 if t != "mouseMoved" else 0)

    def errors(self):
        """Console errors, uncaught exceptions and browser-reported errors
        (failed loads, Content-Security-Policy violations) since goto."""
        out = []
        for e in self.events:
            m, p = e["method"], e.get("params", {})
            if m == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append("exception: %s" % (d.get("exception", {}).get("description")
                                              or d.get("text")))
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console.%s: %s" % (p["type"], " ".join(
                    str(a.get("value", a.get("description"))) for a in p.get("args", []))))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append("log: %s %s" % (p["entry"].get("text"), p["entry"].get("url", "")))
        return out

    def responses(self):
        """(url, status, mimeType) of every response since goto."""
        return [(e["params"]["response"]["url"], e["params"]["response"]["status"],
                 e["params"]["response"].get("mimeType"))
                for e in self.events if e["method"] == "Network.responseReceived"]


class Browser:
    """A headless Chromium with its own profile, stopped on exit."""

    def __init__(self, path=None, width=1000, height=700):
        self.path = path or find_browser()
        if self.path is None:
            raise RuntimeError("no chromium found")
        self.width, self.height = width, height
        self.proc = None
        self.profile = None
        self.pages = []

    def __enter__(self):
        self.profile = tempfile.mkdtemp(prefix="jpip-chromium-")
        args = [self.path, "--headless=new", "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
                "--user-data-dir=" + self.profile, "--no-first-run", "--no-default-browser-check",
                "--disable-gpu", "--disable-extensions", "--disable-background-networking",
                "--disable-sync", "--disable-component-update", "--disable-default-apps",
                "--no-proxy-server", "--force-device-scale-factor=1", "--hide-scrollbars",
                "--mute-audio", "--window-size=%d,%d" % (self.width, self.height),
                "about:blank"]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        portfile = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("chromium exited at start (%d)" % self.proc.returncode)
            if os.path.exists(portfile):
                lines = open(portfile).read().split()
                if len(lines) >= 2:
                    self.port = int(lines[0])
                    return self
            time.sleep(0.1)
        self.__exit__(None, None, None)
        raise RuntimeError("chromium did not open its DevTools port")

    def page(self, width=None, height=None):
        """A new tab, its viewport width x height CSS pixels at scale 1."""
        req = urllib.request.Request("http://127.0.0.1:%d/json/new?about:blank" % self.port,
                                     method="PUT")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=30) as r:
            info = json.loads(r.read())
        ws = WebSocket(info["webSocketDebuggerUrl"])
        p = Page(ws)
        p.call("Emulation.setDeviceMetricsOverride", width=width or self.width,
               height=height or self.height, deviceScaleFactor=1, mobile=False)
        self.pages.append(p)
        return p

    def __exit__(self, *exc):
        for p in self.pages:
            p.ws.close()
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, 15)
            except OSError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        if self.profile:
            shutil.rmtree(self.profile, ignore_errors=True)
        return False


def decode_png(data):
    """(width, height, channels, pixel bytes) of an 8-bit RGB or RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, w = 8, [], None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or ctype not in (2, 6) or interlace:
                raise ValueError("unsupported PNG (depth %d, colour type %d)" % (depth, ctype))
            ch = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    raw = zlib.decompress(b"".join(idat))
    stride = w * ch
    out = bytearray(h * stride)
    prev = bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 1:
            for i in range(ch, stride):
                line[i] = (line[i] + line[i - ch]) & 255
        elif f == 2:
            for i in range(stride):
                line[i] = (line[i] + prev[i]) & 255
        elif f == 3:
            for i in range(stride):
                a = line[i - ch] if i >= ch else 0
                line[i] = (line[i] + ((a + prev[i]) >> 1)) & 255
        elif f == 4:
            for i in range(stride):
                a = line[i - ch] if i >= ch else 0
                b = prev[i]
                c = prev[i - ch] if i >= ch else 0
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                pr = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pr) & 255
        out[y * stride:(y + 1) * stride] = line
        prev = line
    return w, h, ch, bytes(out)
