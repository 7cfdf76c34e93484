#!/usr/bin/env bash
# One-shot GPU training of degan-paper x2 and x4 (PSNR phase), both scales at once on one GPU.
# See tools/gpu/README.md.
#
#   tools/gpu/train_degan_paper.sh prepare [DATA_ROOT]
#       here, in a checkout: .gpu/src = `git archive $COMMIT` (default HEAD) of rsgen/ +
#       pyproject.toml (without rsgen/weights) + this folder; .gpu/data = RSSCN7/train split into train-fit (ids x01-x09
#       of each 100-image block) and train-holdout (ids x10: 28 images), and AID-150.
#       DATA_ROOT defaults to ../shared/data. Adds /.gpu/ to .git/info/exclude.
#
#   bash .gpu/src/tools/gpu/train_degan_paper.sh run [OUT_DIR]
#       on the GPU machine, from the checkout root: trains x2 and x4 as two processes until
#       TRAIN_S seconds after the start, validates and exports, and packs into OUT_DIR
#       (default $OUT, else gpu-out): degan-paper-x{2,4}-model.tar (best/ model folder),
#       degan-paper-x{2,4}-run.tar (log.jsonl, config.yaml, summary.json, stdout), env.txt.
#       Environment: TRAIN_S (default 470), BATCH (x2: 32, x4: 64), CROP (144), LR (3e-4),
#       BATCH_2/BATCH_4/LR_2/LR_4 (one scale only),
#       DATA (.gpu/data), EXTRA (more driver arguments), SCALES ("2 4"), THREADS, DATA_THREADS.
set -euo pipefail

cmd=${1:-}
shift || true
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

case $cmd in
prepare)
    data=$(cd "${1:-$repo/../shared/data}" && pwd)
    gpu=$repo/.gpu
    mkdir -p "$repo/.git/info"
    grep -qxF '/.gpu/' "$repo/.git/info/exclude" 2>/dev/null || echo '/.gpu/' >>"$repo/.git/info/exclude"
    rm -rf "$gpu/src" "$gpu/data"
    mkdir -p "$gpu/src/tools/gpu" "$gpu/data/RSSCN7/train-fit" "$gpu/data/RSSCN7/train-holdout"
    commit=$(git -C "$repo" rev-parse "${COMMIT:-HEAD}")
    git -C "$repo" archive "$commit" rsgen pyproject.toml | tar -x -C "$gpu/src" --exclude 'rsgen/weights'
    cp "$repo"/tools/gpu/train_degan_paper.{sh,py} "$gpu/src/tools/gpu/"
    echo "$commit" >"$gpu/src/SNAPSHOT_COMMIT"
    for dir in "$data"/RSSCN7/train/*/; do
        cls=$(basename "$dir")
        mkdir -p "$gpu/data/RSSCN7/train-fit/$cls" "$gpu/data/RSSCN7/train-holdout/$cls"
        for f in "$dir"*.jpg; do
            case $(basename "$f" .jpg) in
            *10) cp "$f" "$gpu/data/RSSCN7/train-holdout/$cls/" ;;
            *) cp "$f" "$gpu/data/RSSCN7/train-fit/$cls/" ;;
            esac
        done
    done
    cp -r "$data/AID-150" "$gpu/data/AID-150"
    echo "fit: $(find "$gpu/data/RSSCN7/train-fit" -name '*.jpg' | wc -l) RSSCN7 + $(find "$gpu/data/AID-150" -name '*.jpg' | wc -l) AID-150;" \
        "holdout: $(find "$gpu/data/RSSCN7/train-holdout" -name '*.jpg' | wc -l) RSSCN7"
    du -sh "$gpu/src" "$gpu/data"
    ;;
run)
    start=$(date +%s)
    out=${1:-${OUT:-gpu-out}}
    mkdir -p "$out"
    out=$(cd "$out" && pwd)
    src=$repo                                  # the snapshot (or checkout) this script sits in
    data=$(cd "${DATA:-.gpu/data}" && pwd)
    runs=${RUNS:-/tmp/degan-paper-runs}
    train_s=${TRAIN_S:-470}
    scales=${SCALES:-2 4}
    n_scales=$(wc -w <<<"$scales")
    mkdir -p "$runs"
    # BATCH_2 / BATCH_4 / LR_2 / LR_4 override BATCH / LR for one scale.
    per_scale() { local v="$1_$2" d; d=$([ "$1" = BATCH ] && echo "${BATCH:-$([ "$2" = 4 ] && echo 64 || echo 32)}" || echo "${LR:-3e-4}"); echo "${!v:-$d}"; }
    export PYTHONPATH=$src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
    {
        date -u
        nvidia-smi || true
        python3 -c 'import torch, sys; print(sys.version); print("torch", torch.__version__, torch.version.cuda, torch.cuda.is_available())'
        python3 -m pip list 2>/dev/null | grep -iE '^(torch|numpy|pillow|safetensors|pyyaml|scikit-image|tqdm|rasterio) ' || true
        nproc
    } >"$out/env.txt" 2>&1
    for s in $scales; do
        # hard limit: the driver stops at its deadline by itself; SIGTERM 45 s later makes it
        # validate/export and leave, SIGKILL 15 s after that.
        timeout -k 15 $((train_s + 45)) python3 "$src/tools/gpu/train_degan_paper.py" \
            --scale "$s" --out "$runs/degan-paper-x$s" --data-root "$data" \
            --train RSSCN7/train-fit AID-150 --val RSSCN7/train-holdout \
            --batch "$(per_scale BATCH "$s")" --crop "${CROP:-144}" --lr "$(per_scale LR "$s")" \
            --train-until $((start + train_s)) --threads "${THREADS:-$((16 / n_scales / 2))}" --data-threads "${DATA_THREADS:-4}" \
            ${EXTRA:-} >"$runs/x$s.out" 2>&1 &
    done
    (while sleep 20; do nvidia-smi --query-gpu=utilization.gpu,memory.used,power.draw --format=csv,noheader; done) \
        >"$runs/gpu_util.csv" 2>&1 &
    mon=$!
    status=0
    wait_all() { for job in $(jobs -p); do [ "$job" = "$mon" ] || wait "$job" || status=$?; done; }
    wait_all
    kill "$mon" 2>/dev/null || true
    for s in $scales; do
        r=$runs/degan-paper-x$s
        cp "$runs/x$s.out" "$r/stdout.txt" 2>/dev/null || true
        cp "$runs/gpu_util.csv" "$r/" 2>/dev/null || true
        (cd "$runs" && tar -cf "$out/degan-paper-x$s-run.tar" --ignore-failed-read \
            "degan-paper-x$s/log.jsonl" "degan-paper-x$s/config.yaml" "degan-paper-x$s/summary.json" \
            "degan-paper-x$s/stdout.txt" "degan-paper-x$s/gpu_util.csv") || true
        (cd "$r" && [ -d best ] && tar -cf "$out/degan-paper-x$s-model.tar" best) || true
        grep -vE ' step [0-9]+: mse ' "$runs/x$s.out" | tail -n 40 || true
    done
    echo "run.sh: exit status $status, $(($(date +%s) - start)) s"
    ls -la "$out"
    ;;
*)
    sed -n '2,20p' "$0"
    exit 2
    ;;
esac
