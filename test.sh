#!/usr/bin/env bash
# Set up (first run) and run Eva's whole test suite with the real models, then lint and
# type-check. Arguments go to pytest, e.g. ./test.sh tests/server -x
set -euo pipefail
cd "$(dirname "$0")"
scripts/install.sh test
.venv/bin/ruff check eva tests
.venv/bin/mypy eva
exec .venv/bin/python -m pytest "$@"
