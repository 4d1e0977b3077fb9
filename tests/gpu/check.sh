#!/usr/bin/env bash
# The prepared GPU check (issue 13). On a CUDA machine, from a fresh checkout, in about 6-8 minutes
# on one H100/H200:
#   1. the test suite's CUDA tests (tests/gpu, marker `cuda`): AMP fp16 with its scaler, bf16,
#      compile, channels_last, data resident on the GPU, DataLoader with pinned memory,
#      checkpoint/resume on the GPU, benchmark mode with CUDA events;
#   2. benchmark mode over the course models (mlp, fc, lenet, wide_cnn) at 3 batch sizes in fp32
#      and bf16, each against a bare PyTorch loop in the same process;
#   3. the training loop vs a bare loop, and resident tensors vs DataLoader (bench_throughput.py);
#   4. a PGD attack step vs a bare forward+backward wrt the input (bench_attacks.py, issue 8);
# then prints one table. Exit 0 only if every part passed; without CUDA, exit 3 with a message.
#
#   bash tests/gpu/check.sh
#
# Environment: PYTHON (default python3), DL2BENCH_DATA (real datasets; default: generated ones in
# the output folder: speed does not depend on what the pixels show), CHECK_OUT (where logs and
# JSON go; default a new temporary folder). No network and no install needed: the checkout is put
# on PYTHONPATH (`pip install -e .` works too where pip can reach its index).
set -u -o pipefail
cd "$(dirname "$0")/../.." || exit 2
PY=${PYTHON:-python3}

if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "check.sh: error: $PY cannot import torch; set PYTHON to an interpreter that has PyTorch" >&2
    exit 2
fi
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "check.sh: error: no CUDA device (torch.cuda.is_available() is False on $(hostname)): this check" \
         "runs only on a GPU machine. CI never needs it; the CPU test suite is 'python -m pytest'." >&2
    exit 3
fi
missing=$("$PY" -c "
import importlib.util
print(' '.join(n for n in ('numpy', 'pandas', 'yaml', 'pytest', 'matplotlib', 'seaborn') if importlib.util.find_spec(n) is None))")
if [ -n "$missing" ]; then
    echo "check.sh: error: missing Python packages: $missing (pip install -e '.[dev]')" >&2
    exit 2
fi

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export WANDB_MODE=disabled WANDB_SILENT=true PYTHONUNBUFFERED=1
OUT=${CHECK_OUT:-$(mktemp -d -t dl2bench-gpu-check-XXXXXX)}
mkdir -p "$OUT"
DATA=${DL2BENCH_DATA:-$OUT/data}
if [ -z "${DL2BENCH_DATA:-}" ]; then
    "$PY" tests/gpu/make_data.py "$DATA" 20000 || exit 2
fi
export DL2BENCH_DATA="$DATA"
start=$SECONDS
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null | sed 's/^/# GPU: /'

echo "== 1/4 CUDA tests"
timeout 240 "$PY" -m pytest tests/gpu -m cuda -q -p no:cacheprovider --junitxml="$OUT/cuda.xml" 2>&1 | tee "$OUT/cuda.log"
tests_rc=${PIPESTATUS[0]}

echo "== 2/4 benchmark mode vs bare loop ($((SECONDS - start)) s so far)"
timeout 300 "$PY" tests/benchmarks/bench_mode.py --device cuda --models mlp,fc,lenet,wide_cnn \
    --batches 128,1024,4096 --precisions fp32,bf16 --rounds 1 --repeats 5 --seconds 1.5 --warmup 5 \
    --infer-batch 4096 --scaling "" --data-root "$DATA" --json "$OUT/mode.json" 2>&1 | tee "$OUT/mode.log"
mode_rc=${PIPESTATUS[0]}

echo "== 3/4 training loop vs bare loop, loaders ($((SECONDS - start)) s so far)"
timeout 150 "$PY" tests/benchmarks/bench_throughput.py --device cuda --quick --data-root "$DATA" \
    --json "$OUT/throughput.json" 2>&1 | tee "$OUT/throughput.log"
thr_rc=${PIPESTATUS[0]}

echo "== 4/4 PGD attack step vs bare forward+backward wrt the input, issue 8 ($((SECONDS - start)) s so far)"
timeout 60 "$PY" tests/benchmarks/bench_attacks.py --only throughput --device cuda --repeats 9 --steps 10 \
    2>&1 | tee "$OUT/attacks.log"
atk_rc=${PIPESTATUS[0]}

echo
"$PY" tests/gpu/table.py "$OUT" "$tests_rc" "$mode_rc" "$thr_rc"
rc=$?
[ "$rc" -eq 0 ] && [ "$atk_rc" -ne 0 ] && rc=$atk_rc
echo "# $((SECONDS - start)) s; logs and JSON in $OUT"
exit $rc
