"""The run folder's layout: the names of what the stages write, written once.

Every module that reads what another stage wrote takes the name from here, never from that stage's module. (The
dataset folder's layout, what sources write and ingest reads, is cosmos_synth.sources.layout.)

```
<run_dir>/<stage>/            each stage's out_dir, named after the stage (ingest, preprocess, cache, train, ...)
  manifest.jsonl              MANIFEST: one row per sample (ingest, preprocess, cache, generate, label)
  <stage>_config.json         the settings that produced the folder (config.write_config)
<run_dir>/train/
  checkpoints/epoch_<n>/      CHECKPOINTS_DIR: accelerate state, a DONE marker written last
  loss.jsonl                  LOSS_LOG: one row per optimizer step
  train_result.json           RESULT_FILE: steps, final loss, where the weights are (written last)
  train.log                   TRAIN_LOG: the `accelerate launch` child's output
  loss_curve.png              LOSS_CURVE
  pytorch_lora_weights.safetensors, or transformer/ for a full fine-tune (models.ADAPTER_FILE, models.FULL_DIR)
<run_dir>/generate/
  videos/<sample_id>.mp4      VIDEOS_DIR
  videos/.<sample_id>.chunks/ a long video's finished chunks until it is written (cosmos_synth.chain.chunk_folder)
  shards/<shard>.jsonl        SHARDS_DIR: one manifest per shard of a fanned-out generation, merged into MANIFEST
  previews/                   PREVIEWS_DIR: CONTACT_SHEET and ANIMATION (previews/<shard>/ for each shard)
<run_dir>/label/
  actions/<sample_id>.npz     ACTIONS_DIR (cosmos_synth.manifests reads and writes them)
```
"""

MANIFEST = "manifest.jsonl"

CHECKPOINTS_DIR = "checkpoints"
LOSS_LOG = "loss.jsonl"
RESULT_FILE = "train_result.json"
TRAIN_LOG = "train.log"
LOSS_CURVE = "loss_curve.png"

VIDEOS_DIR = "videos"
SHARDS_DIR = "shards"
PREVIEWS_DIR = "previews"
CONTACT_SHEET = "contact_sheet.png"
ANIMATION = "preview.gif"

ACTIONS_DIR = "actions"
