#!/usr/bin/env bash
# Teach the demo world model the push family with LoRA and DoRA on a GPU machine, then evaluate base, LoRA and DoRA
# on held-out push and pick_place episodes (the README's fine-tuning table).
#
#   bash benchmarks/push_finetune.sh OUT_DIR [NUM_EPISODES] [NUM_HELDOUT] [EPOCHS]
#
# Each adapter is one `cosmos-synth run` of the demo recipe (the stages the finetune-and-generate flow runs:
# demo data, ingest, preprocess, latent cache, training, generation, IDM, labels, exports, evaluate) on its own GPU,
# with overrides for the GPU and the experiment's size. Adapters of two learning rates run side by side.
set -euo pipefail
out=${1:?usage: push_finetune.sh OUT_DIR [NUM_EPISODES] [NUM_HELDOUT] [EPOCHS]}
episodes=${2:-48}; heldout=${3:-64}; epochs=${4:-150}
mkdir -p "$out"
gpus=$(python3 -c "import torch; print(max(1, torch.cuda.device_count()))")
common=(--recipe demo --param device=cuda --param train.cpu=false --param demo.num_episodes=$episodes
        --param demo.num_test_pairs=$heldout --param 'demo.heldout_families=["push","pick_place"]'
        --param train.num_epochs=$epochs --param train.batch_size=8 --param train.checkpoint_every_epochs=50
        --param train.num_warmup_steps=50 --param train.num_training_steps=$((epochs * episodes / 8))
        --param idm_train.device=cuda)
i=0
for adapter in lora dora; do
  for lr in 1e-3 3e-4; do
    name=$adapter-lr$lr
    CUDA_VISIBLE_DEVICES=$((i % gpus)) python3 -m cosmos_synth.cli run "${common[@]}" --param run_dir="$out/$name" \
      --param train.adapter=$adapter --param train.learning_rate=$lr > "$out/$name.log" 2>&1 &
    i=$((i + 1))
  done
done
wait
