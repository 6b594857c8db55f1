#!/usr/bin/env bash
# One device call that trains the re-id models on a lent GPU (docs/REID.md, "GPU one-shot").
#
# Fits the device tool's limits: one call of at most 10 minutes, 64 MiB travelling (the
# repository included), at most 8 files of 16 MiB back. Steps, on the device:
#   1. training throughput of HA-CNN (benchmarks/reid_train_speed.py: the loop against the
#      model's own ceiling, and the previous trainer's feeding), ~1 min;
#   2. four trainings side by side, each for $BUDGET minutes: HA-CNN from scratch and
#      HA-CNN from the shipped weights, both on the CUHK protocol plus the in-domain extra
#      sources (cross-domain folders held out), RGA-SC and PFSA from scratch at 160x64;
#   3. each model evaluated there: CUHK01 both directions with misalignment, and the
#      cross-domain protocols prid2011, viper, grid, ilids;
#   4. back: both HA-CNN weights files, and one archive of logs, cards and evaluations
#      (RGA-SC and PFSA weights are 47-55 MB in fp16, over the return limits: their
#      evaluations come back, their weights do not).
#
# Here, before the call:
#   python3 tools/pack_reid_data.py            # .pack/reid, ~43 MiB of WebP at 160x64
#   bash tools/gpu_reid_oneshot.sh --stash     # moves samples/ and the detector weights
#                                              # into .pack/stash (ignored, not carried)
# The call (device tool):  run command="bash tools/gpu_reid_oneshot.sh"
#                          carry=[".pack/reid"] timeout_s=600
# After it:                bash tools/gpu_reid_oneshot.sh --restore
# On a CPU, as a dry run of the mechanics:
#   DEV=cpu BUDGET=0.3 OUT=/tmp/oneshot bash tools/gpu_reid_oneshot.sh
set -u
cd "$(dirname "$0")/.."
STASH=.pack/stash
BIG=(samples weights/yolov8n_recovered.pt weights/yolo11n_recovered.pt weights/yolov8n_int8.tflite)
if [ "${1:-}" = "--stash" ]; then
  mkdir -p "$STASH/weights"
  for p in "${BIG[@]}"; do [ -e "$p" ] && mv "$p" "$STASH/$p"; done
  echo "stashed: ${BIG[*]} -> $STASH (restore with --restore)"; exit 0
fi
if [ "${1:-}" = "--restore" ]; then
  for p in "${BIG[@]}"; do [ -e "$STASH/$p" ] && mv "$STASH/$p" "$p"; done
  git status --short -- samples weights; echo "restored"; exit 0
fi

OUT=${OUT:-/tmp/out}; DATA=${DATA:-.pack/reid}; BUDGET=${BUDGET:-5.5}; DEV=${DEV:-cuda}
SOURCES=${SOURCES:-indomain}; PY=${PY:-python3}; THREADS=${THREADS:-3}
MODELS=${MODELS:-"hacnn_scratch hacnn_ft rga_sc pfsa"}
PROTOCOLS=${PROTOCOLS:-"cuhk01 prid2011 viper grid ilids"}
W=/tmp/reid_oneshot; rm -rf "$W"; mkdir -p "$W" "$OUT"
export PYTHONUNBUFFERED=1 YOLO_OFFLINE=1
AMP=bf16; CL=on; [ "$DEV" = cpu ] && { AMP=off; CL=off; }
{ date +%T; nvidia-smi -L 2>/dev/null; nproc
  $PY -c "import torch, cv2, numpy; print(torch.__version__, cv2.__version__, numpy.__version__, torch.cuda.is_available())"
  $PY -c "import cv2, sys; ok = cv2.imread(sys.argv[1]) is not None; print('webp decode', ok); sys.exit(0 if ok else 1)" \
    "$(ls "$DATA"/cuhk01/*.webp | head -1)" || { echo "cannot decode the packed WebP images"; exit 3; }
} 2>&1 | tee "$W/env.txt"
[ "${PIPESTATUS[0]}" = 0 ] || exit 3

# 1. Throughput (short): loop vs ceiling vs legacy feeding, HA-CNN, batch 128.
steps=20; [ "$DEV" = cpu ] && steps=1
timeout 75 $PY -m benchmarks.reid_train_speed --models hacnn --device "$DEV" --amp "$AMP" \
  --channels-last "$CL" --prefetch on --threads 8 --steps $steps --repeats 3 --legacy \
  > "$W/speed_hacnn.jsonl" 2> "$W/speed_hacnn.err"
cat "$W/speed_hacnn.jsonl"

# 2. Trainings side by side.
train() {
  name=$1; model=$2; shift 2
  $PY -m pipeline.reid.train --model "$model" --data "$DATA" --protocol cuhk01 \
    --extra-train "$SOURCES" --out "$W/$name.safetensors" --epochs 200 \
    --time-budget-min "$BUDGET" --device "$DEV" --amp "$AMP" --channels-last "$CL" \
    --threads "$THREADS" --no-progress --cache-dir "/tmp/cache_$name" \
    --checkpoint-dir "/tmp/ck_$name" --save-every 5 --eval-every 10 "$@" > "$W/$name.log" 2>&1
  echo "$name train exit $? at $(date +%T)" >> "$W/status"
  for proto in $PROTOCOLS; do
    mis=""; [ "$proto" = cuhk01 ] && mis="--misalign 0.1,0.2"
    $PY -m pipeline.cli reid eval --weights "$W/$name.safetensors" --data "$DATA" \
      --protocol "$proto" --json --device "$DEV" --backend torch $mis \
      > "$W/$name.eval_$proto.json" 2>> "$W/$name.eval.err"
  done
  echo "$name eval exit $? at $(date +%T)" >> "$W/status"
}
date +%T > "$W/status"
common=(--source-balance 0.5 --camera-balanced --jitter-p 0.3 --gray-p 0.05 --style-p 0.2)
declare -A args=(
  [hacnn_scratch]="hacnn --lr 1e-3 --weight-decay 0.05 --warmup-epochs 2"
  [hacnn_ft]="hacnn --init-from weights/hacnn_cuhk.safetensors --lr 3.5e-4 --weight-decay 0.05 --warmup-epochs 1"
  [rga_sc]="rga --model-config {\"input_hw\":[160,64]} --lr 1e-3 --weight-decay 0.05 --warmup-epochs 3 --batch-p 16"
  [pfsa]="pfsa --model-config {\"input_hw\":[160,64]} --lr 1e-3 --weight-decay 0.05 --warmup-epochs 3 --batch-p 16"
)
pids=()
for name in $MODELS; do
  # shellcheck disable=SC2086  # the options are words on purpose
  train "$name" ${args[$name]} "${common[@]}" &
  pids+=($!)
done
( while sleep 60; do tail -qn1 "$W"/*.log | cut -c1-200; done ) &
mon=$!
wait "${pids[@]}"
kill $mon 2>/dev/null

# 3./4. What comes back.
cat "$W/status"
for f in "$W"/*.eval_cuhk01.json; do echo "$f"; head -c 400 "$f"; echo; done
tar czf "$OUT/reid_oneshot_logs.tgz" -C "$W" --exclude='*.safetensors' .
for n in hacnn_scratch hacnn_ft; do
  [ -f "$W/$n.safetensors" ] && cp "$W/$n.safetensors" "$W/$n.json" "$OUT/" 2>/dev/null
done
ls -la "$OUT"
