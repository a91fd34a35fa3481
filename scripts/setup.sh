#!/usr/bin/env bash
# Create (or reuse) the virtual environment and install df-sweep with its test tools.
# torch is pinned to 2.13.0: on a CPU machine that is the CPU build; do not upgrade pip first, newer pip
# resolves the pin to a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${DF_VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[dev]"
echo "$venv"
