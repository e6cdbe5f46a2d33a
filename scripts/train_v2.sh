#!/usr/bin/env bash
# Train and score histoseek-base v2 runs one after another on this machine (CPU is fine):
#   bash scripts/train_v2.sh lite0 withheld lite2 lr1 l2sp
# Each NAME trains configs/v2/NAME.yaml into runs/v2-NAME (resumable: re-run continues),
# then scores it with the harness (scripts/eval_run.py -> docs/training/v2-NAME.harness.json)
# and the generalisation proxies (benchmarks/generalisation.py -> v2-NAME.generalisation.json).
# Runs of the lite0 trunk share one cache of frozen maps (same pack, seed and augmentations),
# hard-linked from the first run that built it.
set -euo pipefail
cd "$(dirname "$0")/.."
for name in "$@"; do
  run=runs/v2-$name
  mkdir -p "$run"
  model=$(python -c "import yaml,sys; print(yaml.safe_load(open('configs/v2/$name.yaml'))['model'])")
  if [ "$model" = histoseek-base ] && ! grep -q tune_from "configs/v2/$name.yaml" && [ ! -e "$run/feature_cache-4views.pt" ] \
      && [ -e runs/v2-lite0/feature_cache-4views.pt ]; then
    ln runs/v2-lite0/feature_cache-4views.pt "$run/feature_cache-4views.pt"
  fi
  [ -e "$run/started" ] || date +%s > "$run/started"
  histoseek train --config "configs/v2/$name.yaml" --out "$run"
  [ -e "$run/finished" ] || date +%s > "$run/finished"
  python scripts/eval_run.py "$run" --name "v2-$name"
  python benchmarks/generalisation.py --name "v2-$name" \
      --encoder "$model@$(realpath "$run/best.safetensors")"
done
