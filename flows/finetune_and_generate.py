"""finetune-and-generate: source -> ingest -> preprocess -> (latent cache) -> LoRA/DoRA/full -> generate -> (IDM ->
label) -> export -> (evaluate, with held-out episodes): the stages of cosmos_synth.stages.STAGES, each as its task.

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
from cosmos_synth.recipe import load_run_config
from cosmos_synth.stages import output_paths, stages_of
from tasks.markdown import picture
from tasks.stages import STAGE_TASKS, fan_out_task, prepare_model_task, prepare_source_task

OUTPUTS_ARTIFACT = "finetune-and-generate-outputs"  # flows/local_stack.py prints this artifact after `make demo`


@flow(name="finetune-and-generate")
def finetune_and_generate(recipe: str = "demo", overrides: dict[str, Any] | None = None) -> dict[str, str]:
    """Run every stage of `recipe` with dotted `overrides` ({"train.rank": 16}); return the output paths."""
    # Checks every key and builds every stage's config: a bad override fails here, before the first task.
    cfg = load_run_config(recipe, overrides)
    prepare_model_task(cfg)
    prepare_source_task(cfg)
    results = {}
    for stage in stages_of(cfg):  # cosmos_synth.stages.STAGES, each through its task
        config = stage.config(cfg)
        if stage.name == "generate" and cfg.generate_shards > 1:  # one child flow run per shard on the pool
            results[stage.name] = fan_out_task(config, cfg.generate_shards, cfg.shard_deployment)
        else:
            results[stage.name] = STAGE_TASKS[stage.name](config)

    trained, previews, evaluated = results["train"], results["generate"].previews, results.get("evaluate")
    outputs = {name: str(path.resolve()) for name, path in output_paths(cfg, results).items()}
    markdown = "\n".join(f"- **{k}**: `{v}`" for k, v in outputs.items())
    markdown += f"\n- **tensorboard**: `tensorboard --logdir {trained.out_dir.resolve()}`\n\n"
    markdown += picture(trained.loss_curve, "Training loss")
    if previews is not None:
        markdown += picture(previews.contact_sheet, "Generated videos") + picture(previews.animation, "Preview")
    if evaluated is not None:
        markdown += "\n### Held-out evaluation\n\n" + metrics_table(list(evaluated.rows)) + "\n"
    create_markdown_artifact(key=OUTPUTS_ARTIFACT, markdown=markdown, description=f"Outputs of recipe {recipe!r}")
    return outputs
