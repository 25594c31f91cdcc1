#!/bin/sh
# mod_jpip quick start.
#
#   ./bootstrap.sh build        install missing Debian packages, configure, make
#   ./bootstrap.sh serve [PORT] build, then run httpd in the foreground on
#                               127.0.0.1:PORT (default 8080) with the example
#                               site configuration over the sample archive
#   ./bootstrap.sh check        build, then run every test (make check), then
#                               the unit and tool tests again under ASan and
#                               UBSan in a sanitizer build of a copy of the
#                               tree (_build-san/; SANITIZERS=0 skips it)
#   ./bootstrap.sh distcheck    build, then make distcheck
#
# Environment: CONFIGURE_FLAGS (extra ./configure arguments), JOBS (make -j),
# SANITIZERS (0: no sanitizer pass).
set -eu

cd "$(dirname "$0")"
top=$(pwd)

PACKAGES="build-essential autoconf automake libtool pkg-config apache2 apache2-dev \
libapr1-dev libaprutil1-dev check libopenjp2-7-dev libopenjp2-tools python3 \
clang-format binutils openjph-tools zlib1g-dev libgdcm-tools dcmtk dicom3tools \
libcurl4-openssl-dev curl openssl libopenjpip-dec-server libpng-dev libjpeg62-turbo-dev \
libjpeg-turbo-progs chromium chromium-driver fonts-dejavu-core \
redis-server memcached"

say() { printf 'bootstrap: %s\n' "$*"; }

install_packages() {
    missing=""
    for p in $PACKAGES; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            missing="$missing $p"
        fi
    done
    # npm builds the viewer's assets (viewer/Makefile.am); a nodejs that
    # brings its own npm (not Debian's) is as good
    if ! command -v npm >/dev/null 2>&1; then
        missing="$missing nodejs npm"
    fi
    [ -z "$missing" ] && return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        say "missing packages:$missing (no apt-get here: install them by hand)"
        exit 1
    fi
    sudo=""
    if [ "$(id -u)" != 0 ]; then
        sudo="sudo"
    fi
    say "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    # another install in progress (unattended upgrades, a second checkout)
    # holds dpkg's lock: wait for it rather than fail
    lock="-o DPkg::Lock::Timeout=900"
    # shellcheck disable=SC2086
    $sudo apt-get $lock update -qq </dev/null
    # Debian's apache2 package starts the system httpd; we never need it, and
    # policy-rc.d keeps it from taking port 80 during the install.
    # shellcheck disable=SC2086
    $sudo apt-get $lock install -y -qq --no-install-recommends $missing </dev/null
}

build() {
    install_packages
    if [ ! -x configure ] || [ configure.ac -nt configure ]; then
        say "autoreconf"
        autoreconf -fi
    fi
    if [ ! -f Makefile ] || [ configure -nt config.status ]; then
        say "configure ${CONFIGURE_FLAGS:-}"
        # shellcheck disable=SC2086
        ./configure ${CONFIGURE_FLAGS:-}
    fi
    say "make"
    make -j"${JOBS:-$(nproc 2>/dev/null || echo 2)}"
}

# Sum the closing lines of Check's suites and of the integration harness.
summarise() {
    log=$1
    awk '
        /^[0-9]+%: Checks: / {
            gsub(",", ""); checks += $3; fail += $5 + $7; next
        }
        /^[0-9]+ passed, [0-9]+ failed/ { ip += $1; ifl += $3 }
        END {
            printf "check: unit %d checks, %d failed; tools+integration %d passed, %d failed\n",
                checks, fail, ip, ifl
            printf "%d passed, %d failed\n", checks - fail + ip, fail + ifl
        }' "$log"
}

# The sanitizer pass. automake refuses a VPATH build of a source tree that
# is itself configured (and the normal build must stay in-tree: `serve` and
# the tests use in-tree paths), so the pass builds a copy of the sources in
# _build-san/src: the files git knows (tracked, or new and not ignored) plus
# the autotools output of this tree, mtimes kept so that a second run only
# rebuilds what changed. Without git, `make distdir` makes the copy.
san_copy() {
    dest=$1
    mkdir -p "$dest"
    if command -v git >/dev/null 2>&1 && git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        {
            git ls-files --cached --others --exclude-standard
            echo configure
            echo config.h.in
            echo aclocal.m4
            find build-aux m4 -type f
            find libcore mod_jpip tools samples tests viewer -name Makefile.in
            echo Makefile.in
        } | sed 's|^\./||' | while IFS= read -r f; do
            [ -f "$f" ] && printf '%s\n' "$f"
        done | sort -u | tar -cf - -T - | (cd "$dest" && tar -xpf -)
    else
        rm -rf "$dest"
        make distdir distdir="$dest"
    fi
}

sanitizer_pass() {
    san="$top/_build-san/src"
    say "sanitizer pass: copying the tree to _build-san/src"
    san_copy "$san" || return 1
    cd "$san" || return 1
    if [ ! -f Makefile ] || [ configure -nt config.status ]; then
        say "sanitizer pass: configure --enable-sanitizers"
        # the corpus beside the real tree, not beside the copy
        # shellcheck disable=SC2086
        ./configure --enable-sanitizers --with-testdata="$top/../shared/testdata" \
            ${CONFIGURE_FLAGS:-} >configure.out 2>&1 || {
            cat configure.out
            return 1
        }
    fi
    say "sanitizer pass: make"
    make -j"${JOBS:-$(nproc 2>/dev/null || echo 2)}" >make.out 2>&1 || {
        tail -50 make.out
        return 1
    }
    # then the live tests with the sanitized module inside httpd (the
    # harness preloads the sanitizer runtimes into Debian's apache2)
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        make -C tests/unit check && ASAN_OPTIONS=detect_leaks=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 make -C tests/tools check &&
        make -C tests/integration check
}

cmd=${1:-build}
case "$cmd" in
build)
    build
    ;;
serve)
    port=${2:-${PORT:-8080}}
    build
    httpd=$(sed -n 's/^HTTPD = //p' tests/integration/Makefile)
    apxs=$(sed -n 's/^APXS = //p' Makefile)
    exec python3 tests/integration/harness.py --serve --port "$port" \
        --httpd "$httpd" --apxs "$apxs" \
        --module "$top/mod_jpip/.libs/mod_jpip.so" \
        --samples "$top/samples/archive" --confdir "$top/httpd-conf" \
        --viewer-assets "$top/viewer/dist"
    ;;
check)
    build
    log=$(mktemp)
    status=0
    make check 2>&1 | tee "$log" || status=1
    # make's status is lost in the pipe: failures show in the log.
    if grep -qE '^(FAIL|ERROR):|^make.*Error [0-9]' "$log"; then
        status=1
    fi
    summarise "$log" | head -1
    if [ "${SANITIZERS:-1}" != 0 ]; then
        slog=$(mktemp)
        { (sanitizer_pass) && say "sanitizer pass: passed" || say "sanitizer pass: FAILED"; } 2>&1 |
            tee "$slog"
        if grep -qE '^(FAIL|ERROR):|^make.*Error [0-9]' "$slog" ||
            ! grep -q '^bootstrap: sanitizer pass: passed' "$slog"; then
            status=1
        fi
        printf 'sanitizers (ASan+UBSan), '
        summarise "$slog" | head -1
        cat "$slog" >>"$log"
        rm -f "$slog"
    fi
    # the closing line sums both passes
    summarise "$log" | tail -1
    rm -f "$log"
    exit $status
    ;;
distcheck)
    build
    make distcheck
    ;;
*)
    echo "usage: $0 build | serve [PORT] | check | distcheck" >&2
    exit 2
    ;;
esac
