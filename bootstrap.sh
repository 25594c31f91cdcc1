#!/bin/sh
# mod_jpip quick start.
#
#   ./bootstrap.sh build        install missing Debian packages, configure, make
#   ./bootstrap.sh serve [PORT] build, then run httpd in the foreground on
#                               127.0.0.1:PORT (default 8080) with the example
#                               site configuration over the sample archive
#   ./bootstrap.sh check        build, then run every test (make check)
#   ./bootstrap.sh distcheck    build, then make distcheck
#
# Environment: CONFIGURE_FLAGS (extra ./configure arguments), JOBS (make -j).
set -eu

cd "$(dirname "$0")"
top=$(pwd)

PACKAGES="build-essential autoconf automake libtool pkg-config apache2 apache2-dev \
libapr1-dev libaprutil1-dev check libopenjp2-7-dev libopenjp2-tools python3 \
clang-format binutils"

say() { printf 'bootstrap: %s\n' "$*"; }

install_packages() {
    missing=""
    for p in $PACKAGES; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            missing="$missing $p"
        fi
    done
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
    $sudo apt-get update -qq </dev/null
    # Debian's apache2 package starts the system httpd; we never need it, and
    # policy-rc.d keeps it from taking port 80 during the install.
    $sudo apt-get install -y -qq --no-install-recommends $missing </dev/null
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
            printf "check: unit %d checks, %d failed; integration %d passed, %d failed\n",
                checks, fail, ip, ifl
            printf "%d passed, %d failed\n", checks - fail + ip, fail + ifl
        }' "$log"
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
        --samples "$top/samples/archive" --confdir "$top/httpd-conf"
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
    summarise "$log"
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
