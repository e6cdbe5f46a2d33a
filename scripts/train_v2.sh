#!/usr/bin/env bash
# Train and score histoseek-base v2 runs one after another on this machine (CPU is fine):
#   bash scripts/train_v2.sh deep withheld lite2 lite0 lr1 l2sp
# Each NAME trains configs/v2/NAME.yaml into runs/v2-NAME (resumable: re-run continues);
# histoseek-base trains configs/histoseek-base.yaml, the shipped recipe (= configs/v2/l2sp.yaml),
# into runs/v2-l2sp (deep: configs/v2/deep.yaml, the previously shipped recipe, runs/v2-deep),
# then scores it with the harness (scripts/eval_run.py -> docs/training/v2-NAME.harness.json)
# and the generalisation proxies (benchmarks/generalisation.py -> v2-NAME.generalisation.json).
# SHARE_CACHE_FROM=runs/v2-X hard-links that run's cache of frozen maps (valid for runs of the
# same trunk and tuned depth: same pack, seed and augmentations).
set -euo pipefail
cd "$(dirname "$0")/.."
for name in "$@"; do
  config=configs/v2/$name.yaml
  run=runs/v2-$name
  if [ "$name" = histoseek-base ]; then config=configs/histoseek-base.yaml; run=runs/v2-l2sp; fi
  mkdir -p "$run"
  model=$(python -c "import yaml; print(yaml.safe_load(open('$config'))['model'])")
  # runs of one trunk and tuned depth share the cache of frozen maps (same pack, seed, views)
  share=${SHARE_CACHE_FROM:-}
  if [ -n "$share" ] && [ ! -e "$run/feature_cache-4views.pt" ]; then
    ln "$share/feature_cache-4views.pt" "$run/feature_cache-4views.pt"
  fi
  [ -e "$run/started" ] || date +%s > "$run/started"
  histoseek train --config "$config" --out "$run"
  [ -e "$run/finished" ] || date +%s > "$run/finished"
  python scripts/eval_run.py "$run" --name "$(basename "$run")"
  python benchmarks/generalisation.py --name "$(basename "$run")" \
      --encoder "$model@$(realpath "$run/best.safetensors")"
done
