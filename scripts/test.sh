#!/usr/bin/env bash
# Set up, then run the whole test suite (real Ray, real MLflow, real tiny models; no network, no GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(bash scripts/setup.sh | tail -n 1)
export HF_HUB_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0 MLFLOW_DISABLE_TELEMETRY=true
exec "$venv/bin/python" -m pytest -q "$@"
