#!/usr/bin/env bash
# The GPU path, checked in one go on a machine with a CUDA GPU and its own torch, before anyone spends a GPU-hour:
#   1. both adapters at full size (SD 2.1-base, IF-I-XL) from the shipped configs with random weights, float16 on
#      CUDA: load time, ms per SDS step, peak CUDA memory, whether float16 stays finite (benchmarks/adapter_check.py);
#   2. the packing table: k = 1, 2, 4, 8 trials on the GPU, local vs shared prior (benchmarks/gpu_packing.py).
# It prints Markdown tables; gpu_packing.py writes its table into docs/results/gpu-packing.md. Each part has a time limit (150 s, 300 s):
# with the installs, under 8 minutes on one GPU (an estimate: the script has not yet run on a GPU, only in its CPU
# smoke mode).
#
# Nothing of Ray or MLflow is needed (the packing harness is Ray-free). If diffusers, transformers, pydantic, PyYAML
# or Pillow is missing, they are installed into a folder beside the machine's own torch, from the package registry,
# or offline from a folder of wheels:
#   WHEELHOUSE=/path/to/wheels bash benchmarks/device_check.sh
# (made elsewhere with: pip download -d wheels --only-binary=:all: --python-version 3.X diffusers==0.42.1 \
#   transformers==5.24.0 pydantic pyyaml pillow). The test suite never needs a GPU; this script is run by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
env=${DF_DEVICE_ENV:-/tmp/df-device-env}
# The versions the adapters are tested with here.
deps=(diffusers==0.42.1 transformers==5.24.0 "pydantic>=2.6" "pyyaml>=6" pillow)

smoke=()
ks=1,2,4,8
steps=20
if [ -n "${DEVICE_CHECK_SMOKE:-}" ]; then  # the script's own test: tiny pipelines on the CPU, the fewest steps
  smoke=(--cpu --tiny)
  ks=2
  steps=2
elif ! "$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "device_check: $python has no torch with CUDA here; set PYTHON to the interpreter that has"
  exit 1
fi
site=""
if ! "$python" -c "import diffusers, transformers, pydantic, yaml, PIL" 2>/dev/null; then
  # A folder on PYTHONPATH rather than a venv: the interpreter's own torch may itself live in a venv or conda env,
  # which a nested venv would not see. The machine's numpy stays (its torch was built against it).
  site="$env/site"
  source=()
  if [ -n "${WHEELHOUSE:-}" ]; then source=(--no-index --find-links "$WHEELHOUSE"); fi
  echo "device_check: installing ${deps[*]} into $site" >&2
  "$python" -m pip install -q --disable-pip-version-check --target "$site" ${source[@]+"${source[@]}"} "${deps[@]}" >&2
  if "$python" -c "import numpy" 2>/dev/null; then rm -rf "$site"/numpy "$site"/numpy-* "$site"/numpy.libs; fi
fi
export PYTHONPATH="$PWD:$PWD/benchmarks${site:+:$site}${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

"$python" -c "import torch; print(f'## {torch.cuda.get_device_name(0) if torch.cuda.is_available() else \"CPU\"}, torch {torch.__version__}, CUDA {torch.version.cuda}')"
echo
echo "### Adapters at full size, random weights, float16"
timeout 150 "$python" benchmarks/adapter_check.py --steps "$(( steps < 5 ? steps : 5 ))" ${smoke[@]+"${smoke[@]}"}
echo
echo "### Trials sharing one GPU: local vs shared prior (random:sd-2.1-base, float16, $steps steps per trial)"
timeout 300 "$python" benchmarks/gpu_packing.py --ks "$ks" --steps "$steps" ${smoke[@]+"${smoke[@]}"}
