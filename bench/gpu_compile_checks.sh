#!/usr/bin/env bash
# Second GPU pass: the recipe-step benches after moving small noise/RIR
# banks to the GPU, and the bare SDPN step with the teacher compiled too,
# in torch.compile's default and reduce-overhead (CUDA graphs) modes.
set -u
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"; START=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
  --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
D=/tmp/minivox
python3 -m speechbrain_ssv.minivox --out $D --workers 16 > /tmp/mv.log 2>&1 || { tail /tmp/mv.log; exit 1; }
for r in supervised sdpn; do
  python3 bench/bench_recipe_step.py --recipe $r --data_folder $D --steps 40 \
    --num_workers 12 --device cuda --precision bf16 --out "$OUT/recipe_$r.json" 2>&1 | tail -1
done
echo "recipe benches done at $(( $(date +%s) - START )) s"
ALL=embedding_model,projector,teacher_embedding_model,teacher_projector
for mode in default reduce-overhead; do
  timeout 150 python3 bench/bench_sdpn_step.py --configs paper --batch 96 --device cuda \
    --modes fp32-eager,bf16-compiled --compile_keys $ALL --compile_mode $mode \
    --out "$OUT/sdpn_step_$mode.json" 2>&1 | grep -E "^\| paper|utt/s =|Error|error" | head -8
  echo "$mode done at $(( $(date +%s) - START )) s"
done
