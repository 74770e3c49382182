#!/usr/bin/env bash
# The closed-loop experiment's GPU half (datasets/closed_loop/recipe.toml): the few push demonstrations, a LoRA on
# them, and the world model's videos of the new scenes, from the LoRA (generate/) and from the base model
# (generate-base/). `cosmos-synth closed-loop --from-generated` then does the rest anywhere (IDM, labels, exports,
# policies, rollouts), with the same RUN_DIR path:
#
#   bash benchmarks/closed_loop_generate.sh RUN_DIR [--param KEY=VALUE ...]
set -euo pipefail
run=${1:?usage: closed_loop_generate.sh RUN_DIR [--param KEY=VALUE ...]}; shift
cli="python3 -m cosmos_synth.cli"
args=(--recipe closed_loop --param run_dir="$run" "$@")
mkdir -p "$run"
log() { echo "[$(date +%T)] $*"; }
for stage in ingest preprocess cache train generate; do
  log "$stage"; $cli $stage "${args[@]}" > "$run/$stage.log" 2>&1
done
log "generate (base model)"
$cli generate "${args[@]}" --param generate.adapter=null --param generate.out_dir="$run/generate-base" \
  > "$run/generate-base.log" 2>&1
log "done"
