"""Helpers shared by the tests of tests/tools: synthetic pictures, PNM
reading, decoding with openjpeg and the rebuild-and-compare oracle.

The per-file checks themselves (summary, --bins, rebuilds at reduced
resolution and layers) live in check_inspect.py and are imported from there.
"""

import os
import shutil
import subprocess

from check_inspect import Counter, check_file, decode, run  # noqa: F401

INSPECT = os.environ.get("JPIP_INSPECT", "jpip-inspect")
OPJ_DEC = os.environ.get("OPJ_DECOMPRESS", "opj_decompress")
OPJ_COMP = os.environ.get("OPJ_COMPRESS", "opj_compress")


def which(name):
    """Full path of a program (an absolute path is taken as it is)."""
    if os.path.isabs(name):
        return name if os.access(name, os.X_OK) else None
    return shutil.which(name)


def synth_pnm(path, width, height, comps, maxval=255, seed=1):
    """Write a binary PGM (comps 1) or PPM (comps 3): gradients, a grid of
    lines and deterministic noise, so every resolution and code-block
    carries data. maxval > 255 gives 16-bit samples."""
    state = seed
    wide = maxval > 255
    out = bytearray()
    for y in range(height):
        row = []
        for x in range(width):
            for c in range(comps):
                state = (state * 1103515245 + 12345) & 0x7FFFFFFF
                v = (x * (c + 1) * maxval) // max(1, width) // 2
                v += (y * maxval) // max(1, height) // 3
                if (x // 17 + y // 23 + c) % 5 == 0:
                    v += maxval // 4
                v += (state >> 16) % (maxval // 16 + 1)
                row.append(min(maxval, v))
        if wide:
            for v in row:
                out += bytes((v >> 8, v & 0xFF))
        else:
            out += bytes(row)
    with open(path, "wb") as f:
        f.write(b"P%d\n%d %d\n%d\n" % (5 if comps == 1 else 6, width, height, maxval))
        f.write(out)


def read_pnm(path):
    """(width, height, maxval, comps, samples bytes) of a binary PGM/PPM."""
    with open(path, "rb") as f:
        data = f.read()
    fields = []
    pos = 0
    while len(fields) < 4:
        while data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            while data[pos:pos + 1] not in (b"\n", b""):
                pos += 1
            continue
        start = pos
        while not data[pos:pos + 1].isspace():
            pos += 1
        fields.append(data[start:pos])
    pos += 1
    comps = {b"P5": 1, b"P6": 3}[fields[0]]
    return int(fields[1]), int(fields[2]), int(fields[3]), comps, data[pos:]


def decode_pnm(path, out_dir, name):
    """Decode with opj_decompress to PGM/PPM; the samples, or None."""
    os.makedirs(out_dir, exist_ok=True)
    for ext in (".ppm", ".pgm"):
        out = os.path.join(out_dir, name + ext)
        if os.path.exists(out):
            os.remove(out)
    r = run([OPJ_DEC, "-i", path, "-o", os.path.join(out_dir, name + ".pnm")])
    if r.returncode != 0:
        return None
    for ext in (".pnm", ".ppm", ".pgm"):
        out = os.path.join(out_dir, name + ext)
        if os.path.exists(out):
            return read_pnm(out)
    return None


def rebuild(path, out, opts=()):
    """jpip-inspect --rebuild; (ok, stderr text)."""
    r = run([INSPECT, "--rebuild", out] + list(opts) + [path])
    return r.returncode == 0, r.stderr.decode(errors="replace").strip()


def finish(c):
    line = "%d passed, %d failed" % (c.passed, c.failed)
    if c.skipped:
        line += ", %d skipped" % c.skipped
    print(line, flush=True)
    return 0 if c.failed == 0 else 1


def sh(args):
    """Run a generator command; raise with its output when it fails."""
    r = subprocess.run(args, capture_output=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (os.path.basename(args[0]), r.returncode,
                                                (r.stderr or r.stdout).decode(errors="replace")
                                                .strip()[-300:]))
    return r
