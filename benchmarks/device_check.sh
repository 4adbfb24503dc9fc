#!/usr/bin/env bash
# Every GPU check of ohgw-bench in one prepared script (<= 8 minutes in all), for an offline GPU machine
# to which only the checkout and one prepared folder are copied (see benchmarks/README.md):
#
#   bash benchmarks/device_check.sh --prepare   # HERE, once: build .cache/device/ (data pack + Python deps)
#   bash benchmarks/device_check.sh             # THERE, with .cache/device beside the checkout; OUT=<dir>
#
# That machine has no network and none of this environment: the data beside this checkout does not
# travel, and a virtual environment is built for another Python and far too large to copy. So:
#   * data: the offline CIFAR-10 JPEG copy travels as a byte-exact pack (~20 MB, all JPEG headers are
#     identical and stored once) in .cache/device/, unpacked there and decoded once into OHGW_CACHE;
#   * Python: $PY (default .venv/bin/python if it exists there and sees a GPU, else the image's
#     python3 with torch/torchvision/pandas/pyarrow/scipy/...); the pure-Python packages it lacks
#     (syne-tune, dill, autograd, pydantic, annotated-types, typing-inspection) travel in
#     .cache/device/site, and pydantic-core (compiled) as a cp312 wheel in .cache/device/wheels.
#
# $OUT gets 8 files, none deeper than one folder, so that they come back easily:
#   summary.txt nvidia-smi.txt bench.json bench.log train.log gpu-tests.txt sweep.log artifacts.tar.gz
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
DEV=$REPO/.cache/device

# ------------------------------------------------------------------------------------------ --prepare
if [ "${1:-}" = "--prepare" ]; then
  set -e
  LPY=${PY:-.venv/bin/python}
  mkdir -p "$DEV/site" "$DEV/wheels"
  if [ ! -s "$DEV/cifar10-jpeg75.pack.npz" ]; then
    "$LPY" benchmarks/bench_gpu_pipeline.py --pack-data "$DEV/cifar10-jpeg75.pack.npz"
  fi
  SITE=$("$LPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  for pkg in syne_tune dill autograd pydantic annotated_types typing_inspection; do
    rm -rf "$DEV/site/$pkg" "$DEV/site/$pkg"-*.dist-info
    cp -r "$SITE/$pkg" "$DEV/site/"
    cp -r "$SITE/$pkg"-*.dist-info "$DEV/site/" 2>/dev/null || true
  done
  find "$DEV/site" -name __pycache__ -type d -prune -exec rm -rf {} +
  rm -rf "$DEV/site/syne_tune/experiments/benchmark_definitions" 2>/dev/null || true
  CORE=$("$LPY" -c 'import importlib.metadata as m; print(m.version("pydantic_core"))')
  if ! ls "$DEV/wheels"/pydantic_core-"$CORE"-cp312-*.whl >/dev/null 2>&1; then
    echo "MISSING: pydantic_core $CORE for CPython 3.12 (the sweep step needs it). Fetch it with:"
    echo "  $LPY -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\"
    echo "    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d $DEV/wheels pydantic_core==$CORE"
  fi
  du -sh "$DEV"
  echo "copy .cache/device beside the checkout on the GPU machine"
  exit 0
fi

# ------------------------------------------------------------------------------------------ on the device
T0=$(date +%s)
TOTAL_S=${TOTAL_S:-470}                # the whole script, every step included (<= 8 minutes)
SKIP=${SKIP:-}                         # steps to leave out, e.g. SKIP="train sweep" (names as in summary.txt)
OUT=${OUT:-$REPO/.cache/device-out}
mkdir -p "$OUT"
WORK=$REPO/.cache/device-work          # unpacked data, run directories (ignored by git; never in $OUT)
mkdir -p "$WORK"
export OHGW_CACHE=${OHGW_CACHE:-$REPO/.cache/ohgw}
export OHGW_DATA=${OHGW_DATA:-$WORK/cifar10-jpeg75}
export PYTHONUNBUFFERED=1
export PYTHONDONTWRITEBYTECODE=1
export MPLBACKEND=Agg
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
exec 3>&1                              # say(): the summary and the console, whatever a step's stdout is
say() { echo "$*" >>"$SUMMARY"; echo "$*" >&3; }

if [ -z "${PY:-}" ]; then
  PY=python3
  if [ -x .venv/bin/python ] && .venv/bin/python -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    PY=.venv/bin/python
  fi
fi
# pydantic-core (compiled) from a carried wheel; pure-Python deps from .cache/device/site
EXTRA=""
if ls "$DEV"/wheels/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/ohgw-site \
    "$DEV"/wheels/*.whl >>"$SUMMARY" 2>&1 && EXTRA=/tmp/ohgw-site
fi
export PYTHONPATH=$REPO:$DEV/site${EXTRA:+:$EXTRA}${PYTHONPATH:+:$PYTHONPATH}

say "device_check $(date -u +%FT%TZ) repo=$REPO PY=$PY OUT=$OUT OHGW_DATA=$OHGW_DATA OHGW_CACHE=$OHGW_CACHE"
"$PY" - >>"$SUMMARY" 2>&1 <<'EOF'
import importlib, platform, torch
print("python", platform.python_version(), "| torch", torch.__version__, "| cuda", torch.version.cuda,
      "| available", torch.cuda.is_available(), "|", torch.cuda.get_device_name() if torch.cuda.is_available() else "-")
for m in ("torchvision", "numpy", "pandas", "pyarrow", "yaml", "PIL", "syne_tune", "pydantic", "dill", "autograd", "pytest"):
    try:
        mod = importlib.import_module(m); print(f"  {m} {getattr(mod, '__version__', '?')}")
    except Exception as e:
        print(f"  {m} MISSING ({type(e).__name__}: {str(e)[:120]})")
EOF

# step NAME BUDGET_S CMD...: run under `timeout`, capped by what is left of TOTAL_S; record rc and time
step() {
  local name=$1 budget=$2; shift 2
  local left=$(( TOTAL_S - ($(date +%s) - T0) ))
  local lim=$(( budget < left ? budget : left ))
  case " ${SKIP:-} " in *" $name "*) say "[$name] SKIPPED: in \$SKIP"; return 0;; esac
  if [ "$lim" -lt 15 ]; then say "[$name] SKIPPED: ${left}s of the ${TOTAL_S}s budget left"; return 0; fi
  local s=$(date +%s)
  timeout -k 10 "$lim" "$@"
  local rc=$?
  local st="ok"; [ $rc -ne 0 ] && st="FAILED"; [ $rc -eq 124 ] || [ $rc -eq 137 ] && st="TIMED OUT"
  say "[$name] $st rc=$rc in $(( $(date +%s) - s ))s (limit ${lim}s)"
  return 0
}

# 1. the GPU
step nvidia-smi 20 bash -c 'nvidia-smi; nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit,driver_version --format=csv' \
  >"$OUT/nvidia-smi.txt" 2>&1

# 2. data: unpack the carried pack, decode once into OHGW_CACHE (all later steps reuse the cache)
prep_data() {
  if [ ! -d "$OHGW_DATA/train" ]; then
    if [ ! -s "$DEV/cifar10-jpeg75.pack.npz" ]; then
      echo "no data: $DEV/cifar10-jpeg75.pack.npz missing (run --prepare here and carry .cache/device)"; return 3
    fi
    "$PY" benchmarks/bench_gpu_pipeline.py --unpack-data "$DEV/cifar10-jpeg75.pack.npz" --to "$OHGW_DATA" || return $?
  fi
  "$PY" -c 'import time; t=time.time(); from ohgw_bench.trial.data import load_cifar10; a=load_cifar10(); print({k: v.shape for k, v in a.items()}, f"{time.time()-t:.1f}s")'
}
export -f prep_data; export PY DEV   # `timeout` runs programs, not shell functions: run it in a child bash
step data 60 bash -c prep_data >>"$SUMMARY" 2>&1

# 3. the benchmark at full size (seed pipeline, ours, 1/4/8 concurrent trials, hyper-gradient cost)
step bench 185 "$PY" benchmarks/bench_gpu_pipeline.py --device cuda --size full --concurrent 1,4,8 \
  --out "$OUT/bench.json" >"$OUT/bench.log" 2>&1
grep -A20 -- '---- ratios' "$OUT/bench.log" >>"$SUMMARY" 2>/dev/null

# 4. a short real training run (the 200-epoch cosine schedule, first 15 epochs; one JSON line per epoch)
step train 100 "$PY" -m ohgw_bench.cli train --task cifar10-resnet20 --seed 0 --epochs 15 --out "$WORK/train-r20" \
  >"$OUT/train.log" 2>&1
"$PY" - "$OUT/train.log" >>"$SUMMARY" 2>&1 <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
for r in rows:
    print(f"  train epoch {r['epoch']:>2}: val_acc {r['val_acc']:.4f} train_loss {r['train_loss']:.3f} "
          f"train_time {r['train_time']:.2f}s epoch_time {r['epoch_time']:.2f}s")
EOF

# 5. the GPU tests
step gpu-tests 60 "$PY" -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider >"$OUT/gpu-tests.txt" 2>&1
tail -n 3 "$OUT/gpu-tests.txt" >>"$SUMMARY"

# 6. a short real ASHA sweep on the persistent trial runner (configs/gpu-smoke.yaml belongs to the
#    configs owner; not made here)
if [ -f configs/gpu-smoke.yaml ]; then
  step sweep 60 "$PY" -m ohgw_bench.cli sweep configs/gpu-smoke.yaml --no-report --out "$WORK/sweep" \
    --set runner=persistent >"$OUT/sweep.log" 2>&1
else
  say "[sweep] SKIPPED: configs/gpu-smoke.yaml does not exist" ; echo "configs/gpu-smoke.yaml missing" >"$OUT/sweep.log"
fi

# 7. both trial runners side by side on the GPU (short: one seed each); its table goes to summary.txt
#    and its JSON into artifacts.tar.gz ($OUT already holds its 8 files)
mkdir -p "$WORK/runner"
step runner 110 "$PY" benchmarks/bench_runner.py --task cifar10-resnet20 --n-workers 4 --budget-s 30 --seeds 0:1 \
  --tuner-sleep-time 1 --json "$WORK/runner/bench-runner.json" >"$WORK/runner/bench-runner.log" 2>&1
grep -A6 -- '^real ' "$WORK/runner/bench-runner.log" >>"$SUMMARY" 2>/dev/null

# run directories in one archive (few files in $OUT); checkpoints left out
( cd "$WORK" && tar czf "$OUT/artifacts.tar.gz" --exclude='*.pt' --exclude='*.tmp*' \
    $(ls -d train-r20 sweep runner 2>/dev/null) 2>/dev/null ) || true
say "done in $(( $(date +%s) - T0 ))s; files: $(ls "$OUT" | tr '\n' ' ')"
