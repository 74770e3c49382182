"""finetune-and-generate: source -> ingest -> preprocess -> (latent cache) -> LoRA/DoRA/full -> generate -> (IDM ->
label) -> export -> (evaluate, with held-out episodes).

    prefect deployment run finetune-and-generate/demo --param overrides='{"train.num_epochs": 2}'

Parameters are a recipe name (datasets/<recipe>/recipe.toml) and dotted overrides, exactly as for `cosmos-synth run`.
Each stage hands the next one folders and manifests; the flow returns the paths of what it wrote, and shows them in
its outputs artifact with the loss curve, the contact sheet and the animated preview of the generated videos.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from cosmos_synth.evaluate import metrics_table
from cosmos_synth.layout import VIDEOS_DIR
from cosmos_synth.recipe import load_run_config
from tasks.markdown import picture
from tasks.stages import (
    cache_task, evaluate_task, export_task, fan_out_task, generate_task, ingest_task, label_task, prepare_model_task,
    prepare_source_task, preprocess_task, train_idm_task, train_task,
)

OUTPUTS_ARTIFACT = "finetune-and-generate-outputs"  # flows/local_stack.py prints this artifact after `make demo`


@flow(name="finetune-and-generate")
def finetune_and_generate(recipe: str = "demo", overrides: dict[str, Any] | None = None) -> dict[str, str]:
    """Run every stage of `recipe` with dotted `overrides` ({"train.rank": 16}); return the output paths."""
    # Checks every key and builds every stage's config: a bad override fails here, before the first task.
    cfg = load_run_config(recipe, overrides)
    prepare_model_task(cfg)
    prepare_source_task(cfg)
    ingest_task(cfg.ingest_config())
    preprocess_task(cfg.preprocess_config())
    if cfg.latent_cache:
        cache_task(cfg.cache_config())
    trained = train_task(cfg.train_config())
    if cfg.generate_shards > 1:
        generated = fan_out_task(cfg.generate_config(adapter=trained.adapter_dir), cfg.generate_shards,
                                 cfg.shard_deployment)
    else:
        generated = generate_task(cfg.generate_config(adapter=trained.adapter_dir))
    if cfg.label:
        if cfg.idm is None:
            train_idm_task(cfg.idm_train_config())
        label_task(cfg.label_config())
    exported = export_task(cfg.export_config())
    evaluated = None
    if cfg.resolved_heldout_dir is not None:
        evaluated = evaluate_task(cfg.evaluate_config(adapter=trained.adapter_dir))

    previews = generated.previews
    outputs = {name: str(path.resolve()) for name, path in [
        ("run_dir", cfg.run_dir), ("adapter", trained.adapter_file), ("videos", generated.out_dir / VIDEOS_DIR),
        ("hdf5", exported.hdf5_path), ("lerobot", exported.lerobot_dir), ("groot", exported.groot_dir),
        ("loss_curve", trained.loss_curve), ("contact_sheet", previews and previews.contact_sheet),
        ("preview", previews and previews.animation), ("evaluation", evaluated.report if evaluated else None),
    ] if path is not None}  # groot: labelled runs only; previews: runs with videos; evaluation: held-out episodes
    markdown = "\n".join(f"- **{k}**: `{v}`" for k, v in outputs.items())
    markdown += f"\n- **tensorboard**: `tensorboard --logdir {trained.out_dir.resolve()}`\n\n"
    markdown += picture(trained.loss_curve, "Training loss")
    if previews is not None:
        markdown += picture(previews.contact_sheet, "Generated videos") + picture(previews.animation, "Preview")
    if evaluated is not None:
        markdown += "\n### Held-out evaluation\n\n" + metrics_table(list(evaluated.rows)) + "\n"
    create_markdown_artifact(key=OUTPUTS_ARTIFACT, markdown=markdown, description=f"Outputs of recipe {recipe!r}")
    return outputs
