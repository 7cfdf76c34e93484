#!/usr/bin/env bash
# The paper's Table 3 at equal budget: baseline / sp / lma / rsvq trained for the same number of
# steps on the same data and seed, then evaluated on the test captions with two sampling seeds,
# and a sample sheet of the same prompts from each. Resumable: rerun the same command after an
# interruption and each run continues from its checkpoint (finished runs are skipped).
#
#   tools/run_t2i_ablation.sh RUNS_DIR STEPS [TOKENIZER]
#   e.g. tools/run_t2i_ablation.sh ~/rsgen-runs/ablation 1500 rsvq-cpu/tokenizer
#
# Cost on 2 CPU cores: ~1.8 s per step per run (4 x STEPS steps), ~12 min of evaluation.
set -euo pipefail
runs=${1:?RUNS_DIR}
steps=${2:?STEPS}
tokenizer=${3:-rsvq-cpu/tokenizer}
threads=${THREADS:-2}
repo=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$runs"
declare -A configs=(
  [baseline]=ablations/rsvq-cpu-baseline
  [sp]=ablations/rsvq-cpu-sp
  [lma]=ablations/rsvq-cpu-lma
  [rsvq]=rsvq-cpu
)
for name in baseline sp lma rsvq; do
  out="$runs/$name"
  if [[ -d "$out/final" ]]; then
    echo "$name: finished" >&2
  elif [[ -f "$out/checkpoint.safetensors" ]]; then
    rsgen train --resume "$out" --threads "$threads" -q
  else
    rsgen train "${configs[$name]}" --out "$out" --threads "$threads" -q \
      --set "train.steps=$steps" --set "tokenizer=$tokenizer"
  fi
done
rsgen eval t2i baseline="$runs/baseline/best" sp="$runs/sp/best" lma="$runs/lma/best" rsvq="$runs/rsvq/best" \
  --images 100 --seeds 0,1 -o "$runs/eval" --json -q > "$runs/eval.json"
python "$repo/tools/sample_sheet.py" baseline="$runs/baseline/best" sp="$runs/sp/best" lma="$runs/lma/best" \
  rsvq="$runs/rsvq/best" --prompts "$repo/docs/training/rsvq-cpu/prompts.txt" -n 2 --seed 0 \
  --out "$runs/samples.jpg"
echo "table: $runs/eval.json; samples: $runs/samples.jpg" >&2
