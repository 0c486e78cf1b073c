#!/usr/bin/env bash
# Every GPU check in one command, under 10 minutes on one GPU: the CUDA tests (tests/test_gpu.py), then the
# one-epoch benchmark (bench/gpu_epoch.py; extra arguments go to it). Exits non-zero when anything fails.
set -u -o pipefail
cd "$(dirname "$0")/.."

echo "=== machine"
nvidia-smi || echo "(nvidia-smi not available)"
python - <<'PY'
import sys
import torch
print('python', sys.version.split()[0])
print('torch', torch.__version__, '| CUDA', torch.version.cuda, '| cuDNN', torch.backends.cudnn.version())
print('CUDA devices:', [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])
try:
    import faiss
    print('faiss', getattr(faiss, '__version__', '?'), '| faiss GPUs:',
          faiss.get_num_gpus() if hasattr(faiss, 'get_num_gpus') else 0)
except ImportError:
    print('faiss not installed')
PY
if ! python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "=== gpu_check: FAILED (no usable CUDA device; tests/test_gpu.py would only skip)"
    exit 1
fi

status=0
echo
echo "=== tests/test_gpu.py"
timeout 420 python -m pytest -q -rs tests/test_gpu.py || { echo "--- FAILED: tests/test_gpu.py"; status=1; }

echo
echo "=== bench/gpu_epoch.py $*"
timeout 300 python bench/gpu_epoch.py "$@" || { echo "--- FAILED: bench/gpu_epoch.py"; status=1; }

echo
if [ "$status" -eq 0 ]; then echo "=== gpu_check: PASSED"; else echo "=== gpu_check: FAILED"; fi
exit "$status"
