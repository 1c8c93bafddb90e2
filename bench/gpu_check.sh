#!/usr/bin/env bash
# Accelerator check (issue 14): embed, reward, G-DPO and TIGER on the demo data with bf16 autocast on CUDA;
# prints prompts/s and wall time per step, targets as PASS/FAIL, JSON last line. Finishes in ~5 minutes.
#
#   bench/gpu_check.sh            # CUDA machine, demo defaults (device auto -> cuda)
#   bench/gpu_check.sh --small    # CPU smoke check (device auto -> cpu)
#
# Uses $PYTHON when set, else the repository's .venv, else python3; the repository root goes first on PYTHONPATH.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
py="${PYTHON:-}"
if [[ -z "$py" ]]; then
  if [[ -x "$root/.venv/bin/python" ]]; then py="$root/.venv/bin/python"; else py="$(command -v python3)"; fi
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 || true
fi
exec timeout "${GPU_CHECK_TIMEOUT:-600}" "$py" "$here/_gpu_check.py" "$@"
