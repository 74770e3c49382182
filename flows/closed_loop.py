"""closed-loop: the demo world's closed-loop experiment (cosmos_synth.experiment), each part as its task.

    prefect deployment run closed-loop/demo
    prefect deployment run closed-loop/demo --param overrides='{"closed_loop.num_rollouts": 50}'

The world-model half (the few demonstrations, the fine-tune, both models' videos of the new scenes) runs first
unless `from_generated`; then every policy is trained and rolled out, one task per (training set, seed), and the
results table becomes the `closed-loop-results` artifact. Parameters are those of `cosmos-synth closed-loop`.
"""

from __future__ import annotations

import json
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from cosmos_synth.experiment import (
    PolicyArm,
    check_experiment,
    generate_new_scenes,
    results_markdown,
    run_closed_loop,
    run_policy,
)
from cosmos_synth.recipe import RunConfig, load_run_config
from tasks.progress import ProgressArtifact

HOUR_S = 3600
RESULTS_ARTIFACT = "closed-loop-results"


@task(name="generate-new-scenes", timeout_seconds=48 * HOUR_S)  # training + generation: not transient, no retries
def generate_new_scenes_task(cfg: RunConfig) -> None:
    generate_new_scenes(cfg, progress=ProgressArtifact("closed-loop-generation-progress"))


@task(name="policy", timeout_seconds=6 * HOUR_S, task_run_name="policy-{arm.name}-seed-{seed}")
def policy_task(cfg: RunConfig, arm: PolicyArm, seed: int) -> dict[str, Any]:
    """Train one policy and roll it out (each skipped when already done with the same settings)."""
    return run_policy(cfg, arm, seed)


@flow(name="closed-loop")
def closed_loop(
    recipe: str = "closed_loop", overrides: dict[str, Any] | None = None, from_generated: bool = False
) -> str:
    """Run the closed-loop experiment of `recipe` with dotted `overrides`; return the results file's path."""
    cfg = load_run_config(recipe, overrides)  # every setting checked before the first task
    check_experiment(cfg)
    if not from_generated:
        generate_new_scenes_task(cfg)
    path = run_closed_loop(cfg, run_one=policy_task)
    record = json.loads(path.read_text(encoding="utf-8"))
    create_markdown_artifact(key=RESULTS_ARTIFACT, markdown=results_markdown(record), description=str(path))
    return str(path)
