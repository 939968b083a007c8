#!/usr/bin/env bash
# One GPU session's checks (issue "Train at GPU speed"), run from the repo
# root on a CUDA machine: recipe-step benchmarks of the real data path, the
# bare SDPN step in fp32 / bf16 / bf16-compiled, then minivox reruns of the
# Supervised and SDPN recipes while time is left. Results go to $OUT (or
# ./gpu_out). Wheels for SpeechBrain and friends may be carried in .whl/.
set -u
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
START=$(date +%s); BUDGET=${BUDGET:-560}
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
if [ -d .whl ] && [ -z "${NO_WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null
# DEVICE / STEPS / MINIVOX_ARGS / RUN_ARGS let a CPU dry run check the script.
DEVICE=${DEVICE:-cuda}; STEPS=${STEPS:-40}; D=${D:-/tmp/minivox}
python3 -m speechbrain_ssv.minivox --out $D --workers 16 ${MINIVOX_ARGS:-} > /tmp/minivox.log 2>&1 \
  || { tail -20 /tmp/minivox.log; exit 1; }
echo "minivox ready at $(( $(date +%s) - START )) s"
for r in supervised sdpn; do
  timeout $(left) python3 bench/bench_recipe_step.py --recipe $r --data_folder $D \
    --steps $STEPS --num_workers 12 --device $DEVICE --precision bf16 \
    --out "$OUT/recipe_$r.json" 2>&1 | grep -v "Reading audio" | tail -3
done
echo "recipe benches done at $(( $(date +%s) - START )) s"
timeout $(left) python3 bench/bench_sdpn_step.py ${SDPN_ARGS:---configs paper --batch 96 --device cuda} --out "$OUT/sdpn_step.json" 2>&1 | tail -15
echo "sdpn step done at $(( $(date +%s) - START )) s"
# The READMEs' headline configurations (SDPN: 8 epochs x 90 steps).
rerun() {  # rerun FOLDER YAML [overrides...]
  local name=$1 yaml=$2; shift 2
  [ "$(left)" -gt 40 ] || { echo "$name: no time left"; return; }
  timeout $(left) python3 recipes/VoxCeleb/$name/train.py \
    recipes/VoxCeleb/$name/hparams/$yaml --data_folder $D \
    --output_folder /tmp/run_$name --device $DEVICE --precision bf16 \
    --num_workers 12 --noprogressbar "$@" > /tmp/run_$name.log 2>&1
  echo "$name rc $? at $(( $(date +%s) - START )) s"; tail -3 /tmp/run_$name.log
  cp /tmp/run_$name/results.json "$OUT/results_$name.json" 2>/dev/null
  cp /tmp/run_$name/train_log.txt "$OUT/train_log_$name.txt" 2>/dev/null
}
rerun Supervised ecapa_minivox.yaml ${SUP_ARGS:-}
rerun SDPN sdpn_minivox.yaml ${SDPN_RUN_ARGS:---number_of_epochs 8 --steps_per_epoch 90}
