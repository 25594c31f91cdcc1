"""Every log tag names one message: JPIPLOGNO(nnnn) in the C sources must
be followed each time by the same format string, so that a tag found in an
error log leads to one place in the code.

    python3 tests/check_logtags.py SRCDIR

Exit status 1 (and the offending places on stderr) when a tag is used for
two different messages or is not four digits; 0 otherwise. Run by
`make check` (tests/Makefile.am).
"""

import os
import re
import sys

DIRS = ("mod_jpip", "libcore", "tools")
TAG = re.compile(r"JPIPLOGNO\(([^)]*)\)")
# the message: string literals and format macros up to the next comma or
# closing parenthesis outside them
PART = re.compile(r'\s*("(?:[^"\\]|\\.)*"|[A-Z_][A-Z0-9_]*)')


def message_after(text, pos):
    parts = []
    while True:
        m = PART.match(text, pos)
        if not m:
            break
        parts.append(m.group(1)[1:-1] if m.group(1).startswith('"') else "%" + m.group(1))
        pos = m.end()
    return "".join(parts)


def tags(srcdir):
    out = {}
    for d in DIRS:
        top = os.path.join(srcdir, d)
        for name in sorted(os.listdir(top)) if os.path.isdir(top) else []:
            if not name.endswith((".c", ".h")):
                continue
            path = os.path.join(top, name)
            with open(path, errors="replace") as f:
                text = f.read()
            for m in TAG.finditer(text):
                if text[:m.start()].rstrip().endswith("#define"):
                    continue
                line = text.count("\n", 0, m.start()) + 1
                out.setdefault(m.group(1), []).append(
                    ("%s/%s:%d" % (d, name, line), message_after(text, m.end())))
    return out


def main(argv):
    srcdir = argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    found = tags(srcdir)
    bad = 0
    for tag, uses in sorted(found.items()):
        if not re.fullmatch(r"\d{4}", tag):
            bad += 1
            print("check_logtags: JPIPLOGNO(%s) at %s: not four digits" % (tag, uses[0][0]),
                  file=sys.stderr)
        msgs = {msg for _, msg in uses}
        if len(msgs) > 1:
            bad += 1
            print("check_logtags: JPIPLOGNO(%s) tags %d different messages:" % (tag, len(msgs)),
                  file=sys.stderr)
            for where, msg in uses:
                print("  %s: %s" % (where, msg[:100]), file=sys.stderr)
    if not found:
        print("check_logtags: no JPIPLOGNO tags under %s" % srcdir, file=sys.stderr)
        return 1
    if bad:
        return 1
    print("check_logtags: %d log tags, each for one message" % len(found))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
