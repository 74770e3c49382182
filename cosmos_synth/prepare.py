"""What a run needs before its first stage: its model (the tiny offline one is built on first use) and its episodes
(the procedural demo dataset written, or the Hub datasets downloaded). Both skip what is already there."""

from __future__ import annotations

from pathlib import Path

from cosmos_synth.recipe import TINY, RunConfig


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

        fetch_eval_pairs(
            cfg.pairs_repo,
            revision=cfg.pairs_revision,
            subdir=cfg.pairs_subdir,
            local_dir=cfg.resolved_pairs_dir.parent,
        )
    return cfg.data_dir
