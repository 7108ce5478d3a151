#!/usr/bin/env bash
# Idempotent set-up of the study's virtual environment in .venv/.
# A second run with unchanged requirements installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 needed, found {sys.version}"'

stamp_of() { cat requirements/*.txt scripts/setup.sh pyproject.toml | sha256sum | cut -d' ' -f1; }
STAMP=$(stamp_of)
if [ -f "$VENV/.setup-stamp" ] && [ "$(cat "$VENV/.setup-stamp")" = "$STAMP" ]; then
  exit 0
fi
echo "[setup] creating/updating $VENV" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
# 1. torch + torchvision: the one pair that imports together on a CPU here.
"${PIP[@]}" torch==2.14.1 torchvision==0.29.1
# 2. everything else, pinned; the lock file fixes transitive versions.
"${PIP[@]}" -r requirements/base.txt -c requirements/lock.txt
# 3. torchsort builds from source against the installed torch. Without a usable
#    GPU, build CPU-only: hide nvcc for this one install.
if ! "$VENV/bin/python" -c 'import torchsort' 2>/dev/null; then
  if "$VENV/bin/python" -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    "${PIP[@]}" --no-build-isolation --no-cache-dir torchsort==0.1.10
  else
    NOCUDA_PATH=$(echo "$PATH" | tr ':' '\n' | while read -r d; do [ -x "$d/nvcc" ] || echo "$d"; done | paste -sd:)
    env PATH="$NOCUDA_PATH" CUDA_HOME= "${PIP[@]}" --no-build-isolation --no-cache-dir torchsort==0.1.10
  fi
fi
# 4. the study's own package (editable) and its Jupyter kernel.
"${PIP[@]}" --no-deps --no-build-isolation -e .
"$VENV/bin/python" -m ipykernel install --sys-prefix --name autobuild --display-name "AutoBuild study" >/dev/null
# 4b. the predictor's fused C++ network and loss (autobuild_lib/core/csrc), built once into $VENV/autobuild-ext;
#     ninja rebuilds it on first use when the source changes.
"$VENV/bin/python" -W ignore::FutureWarning -c 'from autobuild_lib.core.chain_network import kernels; kernels()'
# 5. Fashion-MNIST: Debian's package when we may install it (else the loader
#    falls back to data/raw/fashion-mnist or a torchvision download).
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && \
   [ ! -f data/raw/fashion-mnist/train-images-idx3-ubyte.gz ] && \
   [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 || \
    echo "[setup] could not install dataset-fashion-mnist; the loader will try a download" >&2
fi
echo "$STAMP" > "$VENV/.setup-stamp"
echo "[setup] done" >&2
