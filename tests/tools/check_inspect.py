"""Tests of tools/jpip-inspect: the index summary, the bin listing, and the
correctness oracle: a codestream rebuilt from the data-bins must decode
(with openjpeg) to exactly the pixels of the original, at full resolution,
at reduced resolutions and with fewer quality layers.

Runs over the build's sample archive and, when present, the conformance and
malformed files of the shared test corpus. One line per case, then
`N passed, N failed`.
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

INSPECT = os.environ.get("JPIP_INSPECT", "jpip-inspect")
OPJ_DEC = os.environ.get("OPJ_DECOMPRESS", "opj_decompress")
TIMEOUT = 120


class Counter:
    def __init__(self):
        self.passed = self.failed = self.skipped = 0

    def ok(self, name):
        self.passed += 1
        print("ok   - " + name, flush=True)

    def fail(self, name, why):
        self.failed += 1
        print("FAIL - %s: %s" % (name, why), flush=True)

    def skip(self, name, why):
        self.skipped += 1
        print("skip - %s: %s" % (name, why), flush=True)


def run(args, timeout=TIMEOUT):
    return subprocess.run(args, capture_output=True, timeout=timeout)


def decode(path, out_dir, extra):
    """Decode to PGX component files; return their bytes, or None when
    openjpeg itself cannot decode the input with these options."""
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    r = run([OPJ_DEC, "-i", path, "-o", os.path.join(out_dir, "c.pgx")] + extra)
    files = sorted(glob.glob(os.path.join(out_dir, "c*.pgx")))
    if r.returncode != 0 or not files:
        return None
    return [open(f, "rb").read() for f in files]


def summary(path):
    r = run([INSPECT, path])
    if r.returncode != 0:
        raise RuntimeError("exit %d: %s" % (r.returncode, r.stderr.decode(errors="replace")))
    return json.loads(r.stdout)


def check_summary_and_bins(c, name, path):
    try:
        s = summary(path)
    except Exception as e:  # noqa: BLE001
        c.fail(name + ": summary", e)
        return None
    total = sum(v["count"] for v in s["data_bins"].values())
    r = run([INSPECT, "--bins", path])
    lines = r.stdout.decode().splitlines()
    if r.returncode != 0 or len(lines) != total:
        c.fail(name + ": --bins", "%d lines for %d bins" % (len(lines), total))
    else:
        nbytes = sum(int(l.split("length=")[1].split()[0]) for l in lines)
        want = sum(v["bytes"] for v in s["data_bins"].values())
        if nbytes != want:
            c.fail(name + ": --bins", "bytes %d != %d" % (nbytes, want))
        else:
            c.ok(name + ": summary and --bins agree (%d bins)" % total)
    return s


def check_rebuild(c, name, path, tmp, opts, dec_opts):
    ext = os.path.splitext(path)[1] or ".j2k"
    out = os.path.join(tmp, "rebuilt" + ext)
    label = "%s: rebuild %s" % (name, " ".join(opts) or "all bins")
    r = run([INSPECT, "--rebuild", out] + opts + [path])
    if r.returncode != 0:
        c.fail(label, r.stderr.decode(errors="replace").strip())
        return
    want = decode(path, os.path.join(tmp, "a"), dec_opts)
    if want is None:
        c.skip(label, "openjpeg cannot decode the original with %s" % dec_opts)
        return
    # a reduced-resolution rebuild is decoded at the same reduction; a
    # layer-limited one holds only those layers and is decoded whole
    got = decode(out, os.path.join(tmp, "b"), dec_opts if dec_opts[:1] == ["-r"] else [])
    if got is None:
        c.fail(label, "the rebuilt file does not decode")
    elif got != want:
        c.fail(label, "pixels differ from the original's")
    else:
        c.ok(label + ": same pixels")


def check_file(c, path, tmp, full=True):
    name = os.path.basename(path)
    s = check_summary_and_bins(c, name, path)
    if s is None:
        return
    cs = s["codestreams"][0] if s["codestreams"] else None
    if cs is None:
        return
    check_rebuild(c, name, path, tmp, [], [])
    if not full:
        return
    # --max-resolution R discards NL-R levels of the deepest tile-component
    # from every one, as opj_decompress -r does (which needs NL-R <= the
    # smallest NL)
    nl, nl_min = cs["levels"], cs["levels_min"]
    for rr in sorted({0, nl // 2, nl - 1}):
        if 0 <= rr < nl and nl - rr <= nl_min:
            check_rebuild(c, name, path, tmp, ["--max-resolution", str(rr)],
                          ["-r", str(nl - rr)])
    if cs["layers"] > 1:
        check_rebuild(c, name, path, tmp, ["--max-layers", "1"], ["-l", "1"])


def check_malformed(c, path):
    name = os.path.basename(path)
    try:
        r = run([INSPECT, path], timeout=60)
    except subprocess.TimeoutExpired:
        c.fail(name + ": malformed", "no answer within 60 s")
        return
    if r.returncode == 0:
        try:
            json.loads(r.stdout)
            c.ok(name + ": malformed file indexed (valid JSON)")
        except ValueError:
            c.fail(name + ": malformed", "exit 0 without valid JSON")
    elif r.returncode == 1 and r.stderr.strip():
        c.ok(name + ": malformed file refused: " + r.stderr.decode(errors="replace")
             .strip().split(": ", 2)[-1][:90])
    else:
        c.fail(name + ": malformed", "exit %d, stderr %r" % (r.returncode, r.stderr[:200]))


def main():
    c = Counter()
    tmp = tempfile.mkdtemp(prefix="jpip-inspect-")
    try:
        samples = os.environ.get("JPIP_SAMPLES", "")
        for p in sorted(glob.glob(os.path.join(samples, "*.j*"))):
            check_file(c, p, tmp)
        data = os.environ.get("JPIP_TESTDATA", "")
        conf = os.path.join(data, "conformance")
        if os.path.isdir(conf):
            for p in sorted(glob.glob(os.path.join(conf, "*.j*"))):
                check_file(c, p, tmp, full=os.path.getsize(p) < 2_000_000)
            for p in sorted(glob.glob(os.path.join(data, "malformed", "*"))):
                check_malformed(c, p)
        else:
            c.skip("conformance and malformed corpus", "not found (JPIP_TESTDATA=%r)" % data)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    line = "%d passed, %d failed" % (c.passed, c.failed)
    if c.skipped:
        line += ", %d skipped" % c.skipped
    print(line)
    return 0 if c.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
