"""The stages of a run, in order, written once (:data:`STAGES`).

`cosmos-synth run` walks the table in-process (:func:`run_stages`); the finetune-and-generate flow walks the same
table with one Prefect task per stage (flows/finetune_and_generate.py). Before the first stage a run builds its model
when it is the tiny offline one and writes or fetches its episodes (cosmos_synth.prepare).
Each stage reads what the stages before it wrote in the run folder, so its config comes from the RunConfig alone,
and it returns a StageResult.

Adding a stage: its module (a function taking its config and returning a StageResult), its config class
(cosmos_synth.config) and the RunConfig method that builds it (cosmos_synth.recipe, listed in stage_configs so a
recipe checks it before any work), a row below, and its Prefect task (tasks/stages.py, STAGE_TASKS).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cosmos_synth.cache import encode_latent_cache
from cosmos_synth.evaluate import evaluate_models
from cosmos_synth.export import export_episodes
from cosmos_synth.generate import generate_videos
from cosmos_synth.idm import train_idm
from cosmos_synth.ingest import ingest_dataset
from cosmos_synth.label import label_videos
from cosmos_synth.launch import launch_training
from cosmos_synth.prepare import prepare_model, prepare_source
from cosmos_synth.preprocess import preprocess_dataset
from cosmos_synth.progress import Progress
from cosmos_synth.recipe import RunConfig
from cosmos_synth.results import StageResult

logger = logging.getLogger(__name__)


def _always(run: RunConfig) -> bool:
    return True


@dataclass(frozen=True)
class Stage:
    name: str  # its folder under run_dir, and its key in a run's results
    config: Callable[[RunConfig], Any]  # builds its config from the run's settings
    run: Callable[..., StageResult]  # the stage function: run(config[, progress=...])
    when: Callable[[RunConfig], bool] = _always  # whether a run with these settings includes it
    progress: bool = True  # run takes a progress callback (cosmos_synth.progress)

    def __call__(self, config: Any, progress: Progress | None = None) -> StageResult:
        return self.run(config, progress=progress) if self.progress else self.run(config)


STAGES: tuple[Stage, ...] = (
    Stage("ingest", RunConfig.ingest_config, ingest_dataset, progress=False),
    Stage("preprocess", RunConfig.preprocess_config, preprocess_dataset, progress=False),
    Stage("cache", RunConfig.cache_config, encode_latent_cache, when=lambda run: run.latent_cache),
    Stage("train", RunConfig.train_config, launch_training),
    Stage("generate", lambda run: run.generate_config(run.trained_dir), generate_videos),
    Stage("idm", RunConfig.idm_train_config, train_idm, when=lambda run: run.label and run.idm is None),
    Stage("label", RunConfig.label_config, label_videos, when=lambda run: run.label),
    Stage("export", RunConfig.export_config, export_episodes),
    Stage(
        "evaluate",
        lambda run: run.evaluate_config(run.trained_dir),
        evaluate_models,
        progress=False,
        when=lambda run: run.resolved_heldout_dir is not None,
    ),
)


def stages_of(cfg: RunConfig) -> list[Stage]:
    """The stages a run with these settings goes through, in order."""
    return [stage for stage in STAGES if stage.when(cfg)]


def output_paths(cfg: RunConfig, results: dict[str, StageResult]) -> dict[str, Path]:
    """Where a user finds each output of a run: its folder, then what each stage's result names, in stage order."""
    paths = {"run_dir": cfg.run_dir}
    for result in results.values():
        paths.update(result.outputs())
    return paths


def run_stages(cfg: RunConfig, progress: Progress | None = None) -> dict[str, StageResult]:
    """Every stage of the run in-process, in order; return each stage's result by name. `progress` gets every
    long stage's progress."""
    prepare_model(cfg)
    prepare_source(cfg)
    results = {}
    for stage in stages_of(cfg):
        results[stage.name] = stage(stage.config(cfg), progress)
    logger.info("run finished: %s", {name: str(path) for name, path in output_paths(cfg, results).items()})
    return results
