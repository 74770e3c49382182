#!/usr/bin/env bash
# Teach the demo world model the push family with LoRA and DoRA (or a full fine-tune) on a GPU machine, then evaluate
# base and each fine-tune on held-out push and pick_place episodes (the README's fine-tuning table).
#
#   bash benchmarks/push_finetune.sh OUT_DIR [NUM_EPISODES] [NUM_HELDOUT] [STEPS] [BATCH] [REPLAY]
#
# REPLAY: pick_place episodes added to the push demonstrations (demo.replay_episodes), against forgetting; default 64
# (0 trains on push alone, and the adapters forget pick_place).
#
# VARIANTS (environment) lists the fine-tunes as name:adapter:learning_rate:rank, space-separated; default
# "lora:lora:1e-3:32 dora:dora:1e-3:32" (add e.g. "full:full:3e-4:32" for a full fine-tune). The defaults are the
# README's run: 64 demonstrations plus 64 replayed, 50 held-out scenes per family, 2,000 steps of 16 clips.
#
# The demo recipe's own stages, with overrides for the GPU and the experiment's size: one dataset (push
# demonstrations, held-out push and pick_place scenes), then `cosmos-synth train` for each variant side by side
# (spread over the GPUs), then one `cosmos-synth evaluate` of base and every variant, whose IDM labels are scored
# by the IDM trained on the same demonstrations.
#
# DEVICE (environment, default cuda) is the stages' device.
#
# PARAMS (environment) adds recipe overrides to every stage, after the script's own (so they win), as
# space-separated `--param key=value` words without spaces inside a value. The README's long-video run:
#   PARAMS='--param demo.num_frames=41 --param generate.num_frames=41 --param cache.num_windows=4
#   --param train.cond_frame_probs={"1":0.5,"2":0.5} --param demo.heldout_families=["push"]'
#
# FLOW=1 runs each variant through the finetune-and-generate flow instead (flows.local_stack: a local Prefect server,
# a process worker and the `demo` deployment, one stack per variant, side by side, run folder OUT_DIR/NAME). Each
# flow run does every stage of the recipe, ending with an evaluation of base against its own fine-tune; the
# script prints every run's report.
set -euo pipefail
out=${1:?usage: push_finetune.sh OUT_DIR [NUM_EPISODES] [NUM_HELDOUT] [STEPS] [BATCH] [REPLAY]}
episodes=${2:-64}; heldout=${3:-50}; steps=${4:-2000}; batch=${5:-16}; replay=${6:-64}
variants=${VARIANTS:-"lora:lora:1e-3:32 dora:dora:1e-3:32"}
cli="python3 -m cosmos_synth.cli"
gpus=$(python3 -c "import torch; print(max(1, torch.cuda.device_count()))")
epochs=$(( (steps * batch + episodes + replay - 1) / (episodes + replay) ))
data=(--recipe demo --param device=${DEVICE:-cuda} --param demo.num_episodes=$episodes
      --param demo.num_test_pairs=$heldout --param 'demo.heldout_families=["push","pick_place"]'
      --param demo.replay_episodes=$replay)
read -r -d '' -a extra <<< "${PARAMS:-}" || true  # every line; no glob expansion of the JSON values' brackets
data+=("${extra[@]}")
train=(--param train.cpu=false --param train.num_epochs=$epochs --param train.batch_size=$batch
       --param train.num_training_steps=$steps --param train.num_warmup_steps=100 --param train.f_max=1.0
       --param train.f_min=0.1 --param train.checkpoint_every_epochs=$(( epochs / 4 + 1 )))
mkdir -p "$out"
log() { echo "[$(date +%T)] $*"; }
variant_params() {  # name adapter lr rank -> the variant's overrides
  echo --param train.adapter="$2" --param train.learning_rate="$3" --param train.rank="$4" --param train.alpha="$4"
}
if [[ ${FLOW:-0} == 1 ]]; then
  i=0
  for variant in $variants; do
    IFS=: read -r name adapter lr rank <<< "$variant"
    log "finetune-and-generate $name ($adapter, lr $lr, rank $rank) on GPU $((i % gpus)): run folder $out/$name"
    CUDA_VISIBLE_DEVICES=$((i % gpus)) python3 -m flows.local_stack demo "${data[@]}" "${train[@]}" \
      --param run_dir="$out/$name" $(variant_params "$name" "$adapter" "$lr" "$rank") "${extra[@]}" \
      > "$out/flow-$name.log" 2>&1 &
    i=$((i + 1))
  done
  status=0; for job in $(jobs -p); do wait "$job" || status=1; done
  log "done"
  for variant in $variants; do cat "$out/${variant%%:*}/evaluate/report.md" 2>/dev/null || tail -30 "$out/flow-${variant%%:*}.log"; done
  exit $status
fi
data+=(--param run_dir="$out")
for stage in ingest preprocess cache train-idm; do  # train-idm: the IDM that evaluate scores labels with
  log "$stage"; $cli $stage "${data[@]}" > "$out/$stage.log" 2>&1
done
i=0; models=(-m base=)
for variant in $variants; do
  IFS=: read -r name adapter lr rank <<< "$variant"
  log "train $name ($adapter, lr $lr, rank $rank) on GPU $((i % gpus)): $steps steps of $batch clips"
  CUDA_VISIBLE_DEVICES=$((i % gpus)) $cli train "${data[@]}" "${train[@]}" $(variant_params "$name" "$adapter" "$lr" "$rank") \
    --param train.out_dir="$out/$name" "${extra[@]}" > "$out/train-$name.log" 2>&1 &
  models+=(-m "$name=$out/$name"); i=$((i + 1))
done
wait
log "evaluate ${models[*]}"
$cli evaluate "${data[@]}" "${models[@]}" > "$out/evaluate.log" 2>&1
log "done"
cat "$out/evaluate/report.md"
