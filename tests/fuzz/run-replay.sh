#!/bin/sh
# mod_jpip: one `make check` test: replay a fuzz target's seed corpus.
#   run-replay.sh ./fuzz_<target>   (FUZZ_CORPUS: the corpus root)
# The program is the target built with replay.c; it prints
# "fuzz_<target>: N inputs replayed" and fails on a crash or an error.
prog=$1
name=$(basename "$prog")
corpus=${FUZZ_CORPUS:-$(dirname "$0")/corpus}/${name#fuzz_}
if test ! -d "$corpus"; then
    echo "$name: no corpus at $corpus" >&2
    exit 1
fi
exec "$prog" "$corpus"
