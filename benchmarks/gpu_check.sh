#!/usr/bin/env bash
# The whole GPU check in one command, <= 8 minutes on one H100/H200; writes benchmarks/results/gpu-<date>.md.
#
#   bash benchmarks/gpu_check.sh                       # on the GPU machine; then commit benchmarks/results/ and
#                                                      # audiorep/kernels/tuned.json
#   bash benchmarks/gpu_check.sh --cpu-smoke --out D   # no GPU: every step on tiny shapes (Triton interpreter),
#                                                      # results and tuned.json under D (what the tests run)
#
# Steps (each under its own time limit; a failed or timed-out step is recorded and the next one runs):
#   1. the kernel tests, compiled by Triton (TRITON_INTERPRET unset), not interpreted;
#   2. attention and fused-op benchmarks with --write-tuned (what backend "auto" reads);
#   3. the pretraining step: audiorep bf16 (eager and torch.compile) vs s3prl fp32 and fp16 autocast,
#      mockingjay-base, batch 32 of 750-1500 frames; audiorep's ragged attention runs the varlen kernel
#      (padded tiles skipped), its projections and FFN still see the padded batch;
#   4. extraction throughput vs s3prl (8 x 10 s, mixed lengths);
#   5. one 2-minute utterance in one piece, per attention backend, with peak memory (e2e_gpu.py).
# s3prl is not on the GPU machine's Python: point AUDIOREP_WHEELS at a folder holding its wheel and
# dependencies (pip download s3prl==0.4.18 omegaconf antlr4-python3-runtime==4.9.3 -d wheels/) and they are
# installed into a folder under the output; without them the s3prl rows are skipped and say so.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python}"
SMOKE=0
OUT="$ROOT/benchmarks/results"
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-smoke) SMOKE=1 ;;
    --out) OUT="$2"; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1 (--cpu-smoke, --out DIR)" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$OUT"
STAMP="$(date -u +%Y%m%d-%H%M)"
if [ "$SMOKE" = 1 ]; then
  REPORT="$OUT/gpu-smoke-$STAMP.md"; RAW="$OUT/gpu-smoke-raw"; TUNED="$OUT/tuned.json"
  export TRITON_INTERPRET=1
else
  REPORT="$OUT/gpu-$STAMP.md"; RAW="$OUT/gpu-raw-$STAMP"; TUNED="$ROOT/audiorep/kernels/tuned.json"
  unset TRITON_INTERPRET  # compiled kernels, never the interpreter
  if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check.sh: no CUDA device here; run it on the GPU machine, or use --cpu-smoke to exercise it" >&2
    exit 2
  fi
fi
mkdir -p "$RAW"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONWARNINGS=ignore
cd "$ROOT"

if ! "$PY" -c "import s3prl.upstream.mockingjay.model" 2>/dev/null && [ -n "${AUDIOREP_WHEELS:-}" ]; then
  "$PY" -m pip install -q --no-index --find-links "$AUDIOREP_WHEELS" --target "$RAW/pylib" \
    s3prl==0.4.18 omegaconf soundfile >/dev/null 2>&1 || "$PY" -m pip install -q --no-index --no-deps \
    --find-links "$AUDIOREP_WHEELS" --target "$RAW/pylib" s3prl==0.4.18 >/dev/null 2>&1
  export PYTHONPATH="$PYTHONPATH:$RAW/pylib"
fi
HAVE_S3PRL=0
"$PY" -c "import s3prl.upstream.mockingjay.model, s3prl.pretrain.mockingjay.task" 2>/dev/null && HAVE_S3PRL=1

{
  echo "# GPU check ($([ "$SMOKE" = 1 ] && echo 'CPU smoke run: Triton interpreter, tiny shapes, timings meaningless' || echo 'GPU'))"
  echo
  echo "command: \`bash benchmarks/gpu_check.sh $([ "$SMOKE" = 1 ] && echo --cpu-smoke)\`, date: $STAMP UTC, git: $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  "$PY" -c "import torch; print('torch', torch.__version__, '| device:', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu', '| cuda', torch.version.cuda)"
  echo
  echo "| step | status | seconds |"
  echo "|---|---|---|"
} > "$REPORT.head"
: > "$REPORT.body"
START=$SECONDS

# step NAME LIMIT_S COMMAND...: run it under a time limit, keep its log, record the outcome
step() {
  local name="$1" limit="$2"; shift 2
  local t0=$SECONDS log="$RAW/$name.log" status
  echo "== $name (limit ${limit}s): $*" | tee "$log"
  timeout --kill-after=10 "$limit" "$@" >>"$log" 2>&1
  local rc=$?
  case $rc in 0) status=ok ;; 124|137) status="TIMED OUT after ${limit}s" ;; *) status="FAILED (exit $rc)" ;; esac
  echo "| $name | $status | $((SECONDS - t0)) |" >> "$REPORT.head"
  { echo; echo "## $name: $status"; echo; echo "\`$*\`"; echo; echo '```'; tail -n 60 "$log"; echo '```'; } >> "$REPORT.body"
  echo "   -> $status ($((SECONDS - t0)) s)"
}

skip() {
  echo "| $1 | skipped: $2 | 0 |" >> "$REPORT.head"
  echo "   -> $1 skipped: $2"
}

if [ "$SMOKE" = 1 ]; then
  step kernel_tests 240 "$PY" -m pytest -q -p no:cacheprovider tests/kernels/test_layer_norm.py -k "not benchmark"
  step attention 240 "$PY" benchmarks/attention.py --cpu-smoke --lengths 24 --backends triton sdpa reference \
    --out "$RAW" --write-tuned --tuned-path "$TUNED"
  step fused_ops 240 "$PY" benchmarks/fused_ops.py --cpu-smoke --cases amp --no-compile --out "$RAW" \
    --write-tuned --tuned-path "$TUNED"
  if [ "$HAVE_S3PRL" = 1 ]; then
    step pretrain_step 240 "$PY" benchmarks/pretrain_step.py --quick --batch 2 --steps 1 --bf16 --out "$RAW"
    step extract 240 "$PY" benchmarks/run.py extract --quick --batches quick-mixed --repeats 1 --bf16 --out "$RAW"
  else
    skip pretrain_step "s3prl not importable"
    step extract 240 "$PY" benchmarks/run.py extract --quick --batches quick-mixed --repeats 1 --no-s3prl --bf16 \
      --out "$RAW"
  fi
  step long_utterance 240 "$PY" benchmarks/e2e_gpu.py --cpu-smoke --models mockingjay-base --backends sdpa --out "$RAW"
else
  step kernel_tests 75 "$PY" -m pytest -q -p no:cacheprovider tests/kernels -x
  step attention 90 "$PY" benchmarks/attention.py --lengths 500 1500 6000 --reps 10 --warmup 3 --out "$RAW" \
    --write-tuned --tuned-path "$TUNED"
  step fused_ops 45 "$PY" benchmarks/fused_ops.py --reps 20 --warmup 5 --out "$RAW" --write-tuned --tuned-path "$TUNED"
  if [ "$HAVE_S3PRL" = 1 ]; then
    step pretrain_step 150 "$PY" benchmarks/pretrain_step.py --device cuda --bf16 --compile --batch 32 \
      --max-frames 1500 --min-frames 750 --steps 10 --out "$RAW"
    step extract 60 "$PY" benchmarks/run.py extract --device cuda --batches 8x10,mixed --repeats 5 --bf16 --out "$RAW"
  else
    skip pretrain_step "s3prl not importable (set AUDIOREP_WHEELS); audiorep's GPU step is in long_utterance's train rows"
    step extract 60 "$PY" benchmarks/run.py extract --device cuda --batches 8x10,mixed --repeats 5 --no-s3prl --bf16 \
      --out "$RAW"
  fi
  step long_utterance 60 "$PY" benchmarks/e2e_gpu.py --models mockingjay-base --backends auto sdpa triton \
    --batch 32 --max-frames 1500 --steps 5 --warmup 2 --extract-seconds 120 --out "$RAW"
fi

{
  cat "$REPORT.head"
  echo
  echo "total: $((SECONDS - START)) s; raw results and logs: \`${RAW#$ROOT/}\`; tuned table: \`${TUNED#$ROOT/}\`"
  for f in "$RAW"/*.md; do [ -e "$f" ] && { echo; echo "---"; echo; sed 's/^# /## /' "$f"; }; done
  cat "$REPORT.body"
} > "$REPORT"
rm -f "$REPORT.head" "$REPORT.body"
echo "wrote $REPORT"
grep -q "FAILED\|TIMED OUT" "$REPORT" && exit 1
exit 0
