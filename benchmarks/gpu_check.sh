#!/usr/bin/env bash
# One short GPU check for a lent H200 (or any CUDA machine), run from a copy of the working tree:
#   1. the GPU-marked tests (every stage on CUDA, Exa.TrkX reference on CUDA),
#   2. throughput on the study's 100 small events, fused vs staged vs batched, 1..5 workers/GPU,
#   3. per-stage times on one full-size TrackML event,
#   4. the Triton comparison (issue 30): benchmarks/vs_triton.py drives trackflow serve and the
#      tritonserver bundled with nvidia-pytriton (custom backend and ensemble, KIND_GPU instances
#      on cuda) with one load generator on the same events and device; identical tracks checked.
# Results go to stdout, benchmarks/results/gpu_throughput.md, benchmarks/results/vs_triton_<device>/
# and, when set, $OUT.
#
# Usage:  bash benchmarks/gpu_check.sh DATA_ROOT [--device cpu] [--quick] [--no-triton]
#                                      [--triton-python PY] [--small-events DIR]
#   DATA_ROOT is laid out like ../shared/data: exatrkx-service/... (small events, gnn.pt,
#   reference outputs) and trackml/kaggle_train_1/event*-hits.csv.gz (one event is enough).
#   A folder of evt_*.csv alone also works (then no tests and no full event).
#   --device cpu --quick: the same steps on the CPU with small sizes (how it is tested here).
#   Step 4 needs a Python environment with trackflow[triton] (nvidia-pytriton, numpy<2): --triton-python
#   PY, else $TRITON_PYTHON, else .venv/triton/bin/python (`make venv-triton`); and small TrackML
#   events (~1.4k hits): --small-events DIR, else DATA_ROOT/trackml-small, else 16 simulated here
#   (`trackflow simulate`, needs pyacts). Without either it is skipped, saying which is missing;
#   --no-triton skips it.
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
# Step 4 on a lent device: the machine has no PyPI and carries 64 MiB, and the nvidia-pytriton
# wheel alone is 53 MiB, so the Triton environment does not travel with the data above; the step
# then says it is skipped. On a GPU node with PyPI: make venv-triton, then this script.
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
TRITON=1
TRITON_PY=${TRITON_PYTHON:-}
SMALL_EVENTS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --no-triton) TRITON=0; shift ;;
    --triton-python) TRITON_PY=$2; shift 2 ;;
    --small-events) SMALL_EVENTS=$2; shift 2 ;;
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

echo "== Triton comparison (device $DEVICE)"
[ -z "$TRITON_PY" ] && [ -x .venv/triton/bin/python ] && TRITON_PY=.venv/triton/bin/python
[ -z "$SMALL_EVENTS" ] && [ -d "$DATA_ROOT/trackml-small" ] && SMALL_EVENTS="$DATA_ROOT/trackml-small"
if [ "$TRITON" = 0 ]; then
  echo "gpu_check: Triton comparison skipped (--no-triton)"
elif [ -z "$TRITON_PY" ] || ! "$TRITON_PY" -c "import pytriton" 2>/dev/null; then
  echo "gpu_check: Triton comparison skipped: no Python with nvidia-pytriton" \
    "(${TRITON_PY:-none found}; --triton-python PY, or make venv-triton)"
else
  if [ -z "$SMALL_EVENTS" ]; then
    SMALL_EVENTS="$RESULTS/vs_triton_events"
    if ! ls "$SMALL_EVENTS"/event*-hits.csv* >/dev/null 2>&1; then
      # the study's size: ~1.4k hits per event (pileup 10)
      "$PY" -m trackflow simulate --out "$SMALL_EVENTS" --events 16 --seed 1 --pileup 10 --no-progress \
        >"$RESULTS/vs_triton_simulate.log" 2>&1 \
        || { echo "gpu_check: no small events: --small-events DIR, or pyacts to simulate them" \
          "(log: $RESULTS/vs_triton_simulate.log)" >&2; SMALL_EVENTS=""; }
    fi
  fi
  if [ -z "$SMALL_EVENTS" ]; then
    step_failed "Triton comparison: no small events" 1
  else
    VS=(--device "$DEVICE" --triton-python "$TRITON_PY" --out "$RESULTS/vs_triton_$DEVICE" --rates "" --no-floor)
    if [ "$QUICK" = 1 ]; then
      VS+=(--paths custom,serve --instances 1 --concurrency 1,2 --duration 2 --max-events 4)
    else
      VS+=(--paths custom,ensemble,serve --instances 1,2 --concurrency 1,4 --duration 6)
      [ -n "$FULL" ] && VS+=(--full-events "$(dirname "$FULL")" --full-count 1 --full-instances 1
        --full-concurrency 1,2 --full-duration 10)
    fi
    timeout 400 "$PY" benchmarks/vs_triton.py "$SMALL_EVENTS" "${VS[@]}" >"$RESULTS/vs_triton.log" 2>&1
    status=$?
    tail -30 "$RESULTS/vs_triton.log"
    if [ $status -ne 0 ]; then
      step_failed "Triton comparison (log: $RESULTS/vs_triton.log)" $status
    elif ! "$PY" -c "import json, sys; r = json.load(open(sys.argv[1])); bad = [k for k, v in \
r['identity'].items() if v is not True]; print('identical tracks on every path' if not bad else \
'tracks differ: ' + ', '.join(bad)); sys.exit(1 if bad else 0)" "$RESULTS/vs_triton_$DEVICE/vs_triton.json"; then
      step_failed "Triton comparison: tracks not identical ($RESULTS/vs_triton_$DEVICE/vs_triton.md)" 1
    elif [ "$RESULTS" != benchmarks/results ] && [ "$DEVICE" != cpu ]; then
      cp -r "$RESULTS/vs_triton_$DEVICE" benchmarks/results/ || step_failed "copying the Triton tables" $?
    fi
  fi
fi

if [ ${#FAILED[@]} -gt 0 ]; then
  echo "gpu_check: ${#FAILED[@]} step(s) failed: $(IFS=';'; echo "${FAILED[*]}")" >&2
  exit 1
fi
echo "gpu_check: every step passed"
