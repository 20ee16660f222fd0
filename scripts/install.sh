#!/usr/bin/env bash
# Installs everything Eva needs into .venv/ at the repository root; safe to run again
# (it skips what is already there). `scripts/install.sh test` adds the test tools.
#
# System packages (Debian): a C++ toolchain and cmake, because llama-cpp-python has no
# binary wheel and pip builds it (about 4 minutes on 2 cores, once: pip caches the wheel);
# espeak-ng, Eva's robotic fallback voice, which also speaks French.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${1:-}"
missing=()
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
command -v git >/dev/null 2>&1 || missing+=(git)
# The browser tests drive Debian's chromium (Playwright's own browser downloads need the internet).
if [ "$extras" = test ]; then command -v chromium >/dev/null 2>&1 || missing+=(chromium); fi
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

# Reinstall only when the declared dependencies changed since the last install.
target=".${extras:+[$extras]}"
stamp=".venv/.eva-installed${extras:+-$extras}"
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "eva: installing Python packages into .venv (the first time builds llama.cpp: a few minutes)"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -c constraints.txt -e "$target"
    echo "$want" > "$stamp"
fi
