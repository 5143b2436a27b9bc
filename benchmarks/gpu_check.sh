#!/usr/bin/env bash
# One command for a GPU check (issue 20): the CUDA tests, the batch benchmark, the memory of
# a pass, the evaluation throughput on FOLDER (default samples/imagenet), the peers where
# installed and Grad-CAM on one image through a CUDA graph, then one summary of the targets
# (met / NOT MET / not run).
#
#   benchmarks/gpu_check.sh [FOLDER] [--device cuda:0] [--images 400]   # about 6 minutes on a GPU
#   benchmarks/gpu_check.sh --quick                                     # every part small (CPU CI)
#
# Needs torch and requirements.txt; not Streamlit or Ray. See benchmarks/gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
# Run as a module from the repository root: xai_core imports from the checkout, installed or not.
exec "${PYTHON:-python}" -m benchmarks.gpu_check "$@"
