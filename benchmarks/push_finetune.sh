#!/usr/bin/env bash
# Teach the demo world model the push family with LoRA and DoRA on a GPU machine, then evaluate base, LoRA and DoRA
# on held-out push and pick_place episodes (the README's fine-tuning table).
#
#   bash benchmarks/push_finetune.sh OUT_DIR [NUM_EPISODES] [NUM_HELDOUT] [EPOCHS] [LEARNING_RATE]
#
# The demo recipe's own stages, with overrides for the GPU and the experiment's size: one dataset (push
# demonstrations, held-out push and pick_place scenes), then `cosmos-synth train` for each adapter side by side (one
# GPU each when there are two), then one `cosmos-synth evaluate` of the three models. 900 steps of 8 clips
# (150 epochs of 48 episodes) did not teach push (README); the defaults here train longer.
set -euo pipefail
out=${1:?usage: push_finetune.sh OUT_DIR [NUM_EPISODES] [NUM_HELDOUT] [EPOCHS] [LEARNING_RATE]}
episodes=${2:-48}; heldout=${3:-50}; epochs=${4:-500}; lr=${5:-1e-3}
cli="python3 -m cosmos_synth.cli"
gpus=$(python3 -c "import torch; print(max(1, torch.cuda.device_count()))")
data=(--recipe demo --param device=cuda --param run_dir="$out" --param demo.num_episodes=$episodes
      --param demo.num_test_pairs=$heldout --param 'demo.heldout_families=["push","pick_place"]')
train=(--param train.cpu=false --param train.num_epochs=$epochs --param train.batch_size=8
       --param train.learning_rate=$lr --param train.checkpoint_every_epochs=100 --param train.num_warmup_steps=50
       --param train.num_training_steps=$((epochs * episodes / 8)))
mkdir -p "$out"
$cli ingest "${data[@]}" > "$out/ingest.log" 2>&1
$cli preprocess "${data[@]}" > "$out/preprocess.log" 2>&1
$cli cache "${data[@]}" > "$out/cache.log" 2>&1
i=0
for adapter in lora dora; do
  CUDA_VISIBLE_DEVICES=$((i % gpus)) $cli train "${data[@]}" "${train[@]}" --param train.adapter=$adapter \
    --param train.out_dir="$out/$adapter" > "$out/train-$adapter.log" 2>&1 &
  i=$((i + 1))
done
wait
$cli evaluate "${data[@]}" -m base= -m lora="$out/lora" -m dora="$out/dora" > "$out/evaluate.log" 2>&1
cat "$out/evaluate/report.md"
