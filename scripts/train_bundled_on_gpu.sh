#!/usr/bin/env bash
# The bundled model's data and recipe on one GPU machine, in one go: the music21 corpus from
# parsed scores, MMA accompaniments, the balanced mix, then more training of the bundled
# checkpoint with the kit's own fit (the same steps as scripts/train_bundled_on_cpu.py, which
# made the shipped weights on CPU; see musicvae_course/pretrained/MODEL_CARD.md).
#   bash scripts/train_bundled_on_gpu.sh OUT_DIR            # TRAIN_SECONDS=420 by default
# The mix and learning rate default to the next step the model card names (more of stage 15: its
# mix with the fast-polyphony group, at lr 1e-4); MIX_ARGS= and LR= override them.
# Then: python scripts/make_bundled_model.py candidate --run OUT_DIR/run --mix OUT_DIR/mix
#       python scripts/evaluate_bundled_model.py --checkpoint old=... --checkpoint new=... (see its docstring)
# Every step is cached or resumable: run it again to continue.
set -u
out=${1:?usage: train_bundled_on_gpu.sh OUT_DIR}
mkdir -p "$out"
TRAIN_SECONDS=${TRAIN_SECONDS:-420}
MIX_ARGS=${MIX_ARGS:---group-size folk-dance=60000 --group-size folk-song=45000 --group-size fast-line=90000 --group-size baroque-romantic=300000 --group-size fast-polyphony=100000}
LR=${LR:-1e-4}
workers=$(( $(nproc) > 2 ? $(nproc) - 1 : 2 ))
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
{
  date; nproc; nvidia-smi -L; python3 -c "import torch; print('torch', torch.__version__)"
  echo "== corpus rolls ($workers workers; 668 s on 2 cores)"
  python3 -m musicvae_course.corpus.rolls --out "$out/rolls" --workers "$workers" --no-progress
  echo "== MMA accompaniments"
  python3 -m musicvae_course.corpus.mma --out "$out/mma"
  echo "== balanced mix"
  python3 scripts/train_bundled_on_cpu.py prepare --rolls "$out/rolls" --mma "$out/mma" --out "$out/mix" $MIX_ARGS  # split into words on purpose
  until=$(date -d "+$(( (TRAIN_SECONDS + 59) / 60 )) minutes" +%H:%M)  # fit takes a clock time
  echo "== training until $until"
  python3 scripts/train_bundled_on_cpu.py train --out "$out/run" --mix "$out/mix" --until "$until" \
      --device cuda --beta-max 0.1 --lr "$LR" --seed 2030
  date
} 2>&1 | tee -a "$out/log.txt"
