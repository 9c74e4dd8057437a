#!/usr/bin/env bash
# The run that made the bundled checkpoint, on one GPU machine with 16 cores,
# in one go: corpus -> segments -> the card's recipe (shortened) -> benchmark.
#   bash scripts/train_bundled_on_gpu.sh OUT_DIR
# Then, on any machine: python scripts/make_bundled_model.py finish --run OUT_DIR --corpus OUT_DIR
# Time boxes keep the whole run inside a 10-minute slot: the corpus build stops
# after CORPUS_SECONDS (its manifest is written row by row, so what was built is
# used), training after TRAIN_SECONDS.
set -u
out=${1:?usage: train_bundled_on_gpu.sh OUT_DIR}
mkdir -p "$out"
corpus=${CORPUS_DIR:-/tmp/corpus}
CORPUS_SECONDS=${CORPUS_SECONDS:-180}
TRAIN_SECONDS=${TRAIN_SECONDS:-210}
workers=$(( $(nproc) - 1 ))
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
{
  date; nproc; nvidia-smi -L; python3 -c "import torch; print('torch', torch.__version__)"
  echo "== corpus (music21, $workers workers, ${CORPUS_SECONDS}s box)"
  timeout "$CORPUS_SECONDS" python3 scripts/build_corpus.py --out "$corpus" --workers "$workers" \
      --timeout 60 --folk-fraction 0.25 --no-progress
  status=$?
  pkill -9 -f "multiprocessing.spawn" 2>/dev/null  # pool workers outlive a timed-out parent
  echo "corpus exit $status; works written: $(( $(wc -l < "$corpus/manifest.csv") - 1 ))"
  echo "== segments"
  python3 scripts/make_bundled_model.py prepare --corpus "$corpus" --workers "$workers"
  echo "== training"
  train="python3 -m musicvae_course.train --data $corpus/train.npz --split 0.95 0.05 0
         --epochs 40 --beta-warmup-epochs 20 --out $corpus/run --no-progress --time-budget $TRAIN_SECONDS"
  $train --precision bf16 || { echo "bf16 run failed; fp32"; $train --precision fp32 --overwrite; }
  echo "== benchmark"
  timeout 60 python3 benchmarks/bench_train.py --no-cpu
  date
} 2>&1 | tee "$out/log.txt"
cp "$corpus/run/best.pt" "$corpus/run/history.json" "$corpus/heldout.npz" "$corpus/manifest.csv" \
   "$corpus/failures.csv" "$out/" 2>/dev/null
ls -la "$out"
