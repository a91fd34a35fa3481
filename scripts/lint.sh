#!/usr/bin/env bash
# Set up, then lint (ruff), check formatting (ruff format) and types (mypy); configured in pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(bash scripts/setup.sh | tail -n 1)
"$venv/bin/ruff" check .
"$venv/bin/ruff" format --check .
"$venv/bin/mypy"
