#!/usr/bin/env bash
# Set up, then lint (ruff), check formatting (ruff format) and types (mypy), configured in pyproject.toml; then
# build the documentation site (mkdocs.yml) strictly, into a throw-away folder: a broken link or anchor fails it.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(bash scripts/setup.sh | tail -n 1)
"$venv/bin/ruff" check .
"$venv/bin/ruff" format --check .
"$venv/bin/mypy"
site=$(mktemp -d)
trap 'rm -rf "$site"' EXIT
NO_MKDOCS_2_WARNING=1 "$venv/bin/mkdocs" build --strict --site-dir "$site"  # not --quiet: it hides the warnings
