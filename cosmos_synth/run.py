"""The whole pipeline in-process, stage after stage (the CLI's `run`; Prefect's flow calls the same functions)."""

from __future__ import annotations

import logging
from pathlib import Path

from cosmos_synth.recipe import TINY, RunConfig
from cosmos_synth.progress import Progress
from cosmos_synth.results import StageResult

logger = logging.getLogger(__name__)


def prepare_model(cfg: RunConfig) -> str:
    """Build the tiny offline model on first use; other models load from the Hub or their folder as they are."""
    if cfg.model == TINY:
        from cosmos_synth.models import build_tiny_model

        build_tiny_model(Path(cfg.resolved_model))
    return cfg.resolved_model


def prepare_source(cfg: RunConfig) -> Path:
    """Write the procedural demo dataset, or download the Hub datasets, as the recipe asks; return the root."""
    if cfg.source == "procedural":
        from cosmos_synth.sources.procedural import write_demo_dataset

        write_demo_dataset(cfg.demo_config())
    elif cfg.source == "hub":
        from cosmos_synth.sources.hub import fetch_gr1

        fetch_gr1(cfg.dataset_repo, revision=cfg.dataset_revision, local_dir=cfg.data_dir)
    if cfg.pairs_dir is None and cfg.pairs_repo is not None:
        from cosmos_synth.sources.hub import fetch_eval_pairs

        fetch_eval_pairs(cfg.pairs_repo, revision=cfg.pairs_revision, subdir=cfg.pairs_subdir,
                         local_dir=cfg.resolved_pairs_dir.parent)
    return cfg.data_dir


def output_paths(cfg: RunConfig, results: dict[str, StageResult]) -> dict[str, Path]:
    """Where a user finds each output of a run: its folder, then what each stage's result names, in stage order."""
    paths = {"run_dir": cfg.run_dir}
    for result in results.values():
        paths.update(result.outputs())
    return paths


def run_pipeline(cfg: RunConfig, progress: Progress | None = None) -> dict[str, StageResult]:
    """source → ingest → preprocess → (latent cache) → finetune → generate → (IDM, label) → export → (evaluate).

    Returns each stage's result by stage name. `progress` gets every long stage's progress."""
    from cosmos_synth.export import export_episodes
    from cosmos_synth.generate import generate_videos
    from cosmos_synth.ingest import ingest_dataset
    from cosmos_synth.launch import launch_training
    from cosmos_synth.preprocess import preprocess_dataset

    prepare_model(cfg)
    prepare_source(cfg)
    results = {"ingest": ingest_dataset(cfg.ingest_config())}
    results["preprocess"] = preprocess_dataset(cfg.preprocess_config())
    if cfg.latent_cache:
        from cosmos_synth.cache import encode_latent_cache

        results["cache"] = encode_latent_cache(cfg.cache_config(), progress=progress)
    results["train"] = launch_training(cfg.train_config(), progress=progress)
    results["generate"] = generate_videos(cfg.generate_config(results["train"].adapter_dir), progress=progress)
    if cfg.label:
        from cosmos_synth.idm import train_idm
        from cosmos_synth.label import label_videos

        if cfg.idm is None:
            results["idm"] = train_idm(cfg.idm_train_config(), progress=progress)
        results["label"] = label_videos(cfg.label_config(), progress=progress)
    results["export"] = export_episodes(cfg.export_config(), progress=progress)
    if cfg.resolved_heldout_dir is not None:
        from cosmos_synth.evaluate import evaluate_models

        results["evaluate"] = evaluate_models(cfg.evaluate_config(results["train"].adapter_dir))
    logger.info("run finished: %s", {name: str(path) for name, path in output_paths(cfg, results).items()})
    return results
