#!/usr/bin/env bash
# One short GPU check for a lent H200 (or any CUDA machine), run from a copy of the working tree:
#   1. the GPU-marked tests (every stage on CUDA, Exa.TrkX reference on CUDA),
#   2. throughput on the study's 100 small events, fused vs staged vs batched, 1..5 workers/GPU,
#   3. per-stage times on one full-size TrackML event.
# Results go to stdout, benchmarks/results/gpu_throughput.md and, when set, $OUT.
#
# Usage:  bash benchmarks/gpu_check.sh DATA_ROOT [--device cpu] [--quick]
#   DATA_ROOT is laid out like ../shared/data: exatrkx-service/... (small events, gnn.pt,
#   reference outputs) and trackml/kaggle_train_1/event*-hits.csv.gz (one event is enough).
#   A folder of evt_*.csv alone also works (then no tests and no full event).
#   --device cpu --quick: the same steps on the CPU with small sizes (how it is tested here).
#
# Preparing a device run (the device machine sees neither ../shared nor PyPI; its python has
# torch, scipy, pandas, pytest, but not dask, which trackflow.config needs):
#   echo /.gpu-data/ >> .git/info/exclude; echo /.whl/ >> .git/info/exclude
#   mkdir -p .gpu-data/trackml/kaggle_train_1
#   cp -r ../shared/data/exatrkx-service .gpu-data/
#   cp ../shared/data/trackml/kaggle_train_1/event000001001-hits.csv.gz .gpu-data/trackml/kaggle_train_1/
#   python3 -m pip download --no-deps -d .whl dask==2026.8.0 partd==1.4.2 locket==1.0.0
#   run(command="bash benchmarks/gpu_check.sh .gpu-data", carry=[".gpu-data", ".whl"], timeout_s=560)
#
# Every step's status is checked; a failed step is named on stderr and the others still run.
# Exit codes: 0 every step passed; 1 a step failed (named in the last line); 2 usage;
#             3 --device cuda (the default) and no CUDA device: nothing was measured.
set -uo pipefail

FAILED=()
step_failed() {  # step name, its exit status
  echo "gpu_check: FAILED: $1 (exit status $2)" >&2
  FAILED+=("$1")
}

DATA_ROOT=${1:?usage: gpu_check.sh DATA_ROOT [--device cpu] [--quick]}
shift
DEVICE=cuda
QUICK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    *) echo "gpu_check: unknown option $1" >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  if ! "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/trackflow-site .whl/*.whl; then
    echo "gpu_check: FAILED: installing .whl/*.whl" >&2
    exit 1
  fi
  export PYTHONPATH=/tmp/trackflow-site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
export PYTHONUNBUFFERED=1
RESULTS=${OUT:-benchmarks/results}
mkdir -p "$RESULTS" || { echo "gpu_check: FAILED: cannot create $RESULTS" >&2; exit 1; }

SMALL="$DATA_ROOT/exatrkx-service/exatrkx_pipeline/datanmodels/lrt/inputs"
[ -d "$SMALL" ] || SMALL="$DATA_ROOT"
GNN="$DATA_ROOT/exatrkx-service/exatrkx_pipeline/datanmodels/torchscript/gnn.pt"
FULL=$(ls "$DATA_ROOT"/trackml/kaggle_train_1/event*-hits.csv* 2>/dev/null | head -1)

echo "== machine"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || step_failed nvidia-smi $?
fi
"$PY" -c "import torch, os; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '', os.cpu_count(), 'CPUs')"
status=$?
if [ $status -ne 0 ]; then
  echo "gpu_check: FAILED: $PY cannot import torch (exit status $status)" >&2
  exit 1
fi
if [ "$DEVICE" = cuda ] && ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA device (torch.cuda.is_available() is False): nothing measured;" \
    "use --device cpu --quick for the CPU form" >&2
  exit 3
fi

if [ -d "$DATA_ROOT/exatrkx-service" ]; then
  echo "== GPU tests (device $DEVICE)"
  MARK=gpu; [ "$DEVICE" = cpu ] && MARK="not gpu"
  TRACKFLOW_SHARED_DATA="$DATA_ROOT" timeout 180 "$PY" -m pytest -q -p no:cacheprovider -m "$MARK" \
    tests/test_exatrkx_reference.py tests/test_graph_building.py tests/test_stages.py 2>&1 \
    | tee "$RESULTS/gpu_tests.log" | tail -15
  status=$?  # pipefail: pytest's status (124: timed out), not tail's
  if [ $status -ne 0 ]; then
    step_failed "GPU tests (log: $RESULTS/gpu_tests.log)" $status
  elif ! grep -q " passed" "$RESULTS/gpu_tests.log"; then
    step_failed "GPU tests: none passed, every one skipped (log: $RESULTS/gpu_tests.log)" 0
  fi
fi

echo "== throughput"
ARGS=(--data "$SMALL" --device "$DEVICE" --out "$RESULTS/gpu_throughput.md")
[ -f "$GNN" ] && ARGS+=(--gnn "$GNN")
if [ "$QUICK" = 1 ]; then
  # small sizes; no full-size event (minutes on a CPU)
  ARGS+=(--workers 1,2 --events 6 --passes 1 --hidden 64 --calibrate 2 --batch 3)
else
  ARGS+=(--workers 1,2,3,4,5 --passes 3 --batch 25 --threads 2)
  [ -n "$FULL" ] && ARGS+=(--full-event "$FULL")
fi
timeout 420 "$PY" benchmarks/gpu_throughput.py "${ARGS[@]}"
status=$?
if [ $status -ne 0 ]; then
  step_failed throughput $status
elif [ "$RESULTS" != benchmarks/results ] && [ "$DEVICE" != cpu ]; then
  # a device run's table also goes to the record (a CPU run under $OUT, as in the tests, does not)
  cp "$RESULTS/gpu_throughput.md" benchmarks/results/ || step_failed "copying the table to benchmarks/results" $?
fi

if [ ${#FAILED[@]} -gt 0 ]; then
  echo "gpu_check: ${#FAILED[@]} step(s) failed: $(IFS=';'; echo "${FAILED[*]}")" >&2
  exit 1
fi
echo "gpu_check: every step passed"
