"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from cosmos_synth.config import DemoDataConfig
from cosmos_synth.sources.procedural import write_demo_dataset


# demo data fixtures ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small procedural dataset (GR1 layout), written once per session: 4 episodes of 33 frames at 64x96, 2 test
    pairs. Read-only: copy it (shutil.copytree) before changing anything."""
    root = tmp_path_factory.mktemp("demo") / "data"
    return write_demo_dataset(DemoDataConfig(out_dir=root, num_episodes=4, num_test_pairs=2))


# tiny model fixtures --------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny offline Cosmos-architecture model, built and saved once per session (read-only)."""
    from cosmos_synth.models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture()
def tiny_pipe(tiny_model: Path):
    """A fresh float32 CPU pipeline loaded from the tiny model folder through the one loading path."""
    from cosmos_synth.models import load_pipeline

    return load_pipeline(tiny_model, dtype="float32", device="cpu")


@pytest.fixture(scope="session")
def clips(demo_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo dataset ingested (9-frame minimum) and preprocessed to 32x48 clips, once per session (read-only)."""
    from cosmos_synth.config import IngestConfig, PreprocessConfig
    from cosmos_synth.ingest import ingest_dataset
    from cosmos_synth.preprocess import preprocess_dataset

    root = tmp_path_factory.mktemp("clips")
    ingest = ingest_dataset(IngestConfig(dataset_dir=demo_dataset, out_dir=root / "ingest", min_frames=9))
    return preprocess_dataset(PreprocessConfig(manifest=ingest.manifest, out_dir=root / "pre", height=32,
                                               width=48)).out_dir
