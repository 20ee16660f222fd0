#!/usr/bin/env bash
# Set up (first run) and start Eva with the embedded offline models on http://127.0.0.1:8000.
# Arguments go to `eva serve`, e.g. ./start.sh --port 8001
set -euo pipefail
cd "$(dirname "$0")"
scripts/install.sh
exec .venv/bin/eva serve "$@"
