"""mod_jpip live malformed-corpus outcomes: what httpd answers for each
file of the shared malformed corpus is pinned in malformed-outcomes.txt
(status, then the gist of the answer), so that a change in what is refused,
or why, is a visible diff of that table.

    malformed_cases.py            check every file against the table
    malformed_cases.py --update   rewrite the table from what the server
                                  answers now (review the diff, commit it)

Through make: `make -C tests/integration check TESTS=run-malformed`, and
`make -C tests/integration update-malformed` for --update. Each file is
asked for its main header and a window (type=jpp-stream&fsiz=128,128).
The gist of a refusal is the first line of its text body; of a 200, the
stream's shape (content type, EOR reason, which kinds of data-bins). The
answers must be clean either way (a text body naming the problem, or a
stream ending with an EOR) and nothing may crash. One line per file, then
`N passed, N failed`.
"""

import glob
import os
import re
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Httpd, Runner, Skip, expect  # noqa: E402
import jpp  # noqa: E402

TABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "malformed-outcomes.txt")
QUERY = "type=jpp-stream&fsiz=128,128"
HEADER = """\
# What httpd answers for each file of the shared malformed corpus to
# ?%s: file, status, and the gist of the answer (for a
# refusal the reason after "NAME is not a servable JPEG 2000 file: ", for
# a 200 the stream's shape). Checked by malformed_cases.py (run-malformed).
# When a change makes an outcome differ on purpose, regenerate it with
#   make -C tests/integration update-malformed
# and commit the diff with the change that caused it.
""" % QUERY

CLASSES = {0: "precinct", 1: "precinct", 2: "tile-header", 4: "tile", 5: "tile",
           6: "main-header", 8: "metadata"}


def gist(st, hd, body, name):
    """One line saying what the answer was, without the server's paths."""
    if st == 200:
        ctype = hd.get("content-type", "")
        expect(ctype.startswith("image/jp"), "a 200 of type %r" % ctype)
        msgs, eor, trailing = jpp.parse(body)
        expect(eor is not None and trailing == 0, "a 200 without a clean EOR")
        kinds = sorted({CLASSES.get(m.cls, "class %d" % m.cls) for m in msgs})
        return "%s EOR %d; %s" % (ctype, eor, ", ".join(kinds) or "no data-bins")
    expect(400 <= st < 600, "status %d" % st)
    expect(hd.get("content-type", "").startswith("text/plain"),
           "%d of type %r" % (st, hd.get("content-type")))
    text = jpp.error_text(body).decode("utf-8", "replace").strip().splitlines()
    expect(text and len(text[0]) > 10, "%d without a text body naming the problem" % st)
    line = re.sub(r"\s+", " ", text[0].replace(name, "NAME"))
    # every refusal of a file says this first: the table keeps the reason
    line = re.sub(r"^NAME is not a servable JPEG 2000 file: ", "", line)
    return line[:140]


def read_table():
    out = {}
    if not os.path.exists(TABLE):
        return out
    with open(TABLE) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            name, st, g = line.split("\t", 2)
            out[name] = (int(st), g)
    return out


def write_table(rows):
    with open(TABLE, "w") as f:
        f.write(HEADER)
        for name in sorted(rows):
            st, g = rows[name]
            f.write("%s\t%d\t%s\n" % (name, st, g))


def main(argv):
    update = "--update" in argv
    data = os.environ.get("JPIP_TESTDATA", "")
    files = sorted(glob.glob(os.path.join(data, "malformed", "*")))
    run = Runner()
    if not files:
        run.case("malformed corpus", lambda: (_ for _ in ()).throw(
            Skip("not found (JPIP_TESTDATA=%r)" % data)))
        return run.summary()
    h = Httpd(os.environ["HTTPD"], os.environ["APXS"], os.environ["JPIP_MODULE"],
              os.path.join(os.environ["JPIP_SRCDIR"], "..", "..", "httpd-conf"),
              extra_files=files, servers=2)
    try:
        h.start()
    except Exception as e:  # noqa: BLE001
        print("FAIL - start httpd: %s" % e)
        print("0 passed, 1 failed")
        return 1
    table = read_table()
    got = {}

    def one(name):
        q = urllib.parse.quote(name)
        st, hd, body = h.get("/jpip/%s?type=jpp-stream" % q, timeout=60)
        first = gist(st, hd, body, name)
        st, hd, body = h.get("/jpip/%s?%s" % (q, QUERY), timeout=60)
        got[name] = (st, gist(st, hd, body, name))
        if st != 200:
            # the main header alone is refused alike: the file, not the window
            expect(first == got[name][1], "the main header alone: %r, a window: %r"
                   % (first, got[name][1]))
        if update:
            return
        expect(name in table, "no outcome pinned for this file (regenerate the table)")
        want = table[name]
        expect(got[name] == want, "answers %d %r; the table says %d %r"
               % (got[name] + want))

    try:
        for f in files:
            name = os.path.basename(f)
            run.case("%s: %s" % (name, "as pinned" if not update else "answered"), one, name)
        if not update:
            gone = sorted(set(table) - {os.path.basename(f) for f in files})
            run.case("every file of the table is in the corpus",
                     lambda: expect(not gone, "not in the corpus: %s" % gone))
    finally:
        h.stop()
    run.case("no worker died, no [error]/[crit] lines",
             lambda: expect(not h.bad_log_lines(), "\n  ".join(h.bad_log_lines()[:10])))
    h.cleanup()
    if update:
        write_table(got)
        print("# wrote %s (%d files)" % (TABLE, len(got)), flush=True)
    return run.summary()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
