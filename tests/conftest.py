"""Shared pytest fixtures."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cosmos_synth.config import DemoDataConfig
from cosmos_synth.sources.procedural import write_demo_dataset

# demo data fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small procedural dataset (GR1 layout), written once per session: 4 episodes of 33 frames at 64x96, 2 test
    pairs. Read-only: copy it (shutil.copytree) before changing anything."""
    root = tmp_path_factory.mktemp("demo") / "data"
    return write_demo_dataset(DemoDataConfig(out_dir=root, num_episodes=4, num_test_pairs=2, num_frames=33))


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


def _tiny_transformer_with_adapter(tiny_model: Path, adapter: str = "lora", std: float = 0.05):
    """A fresh float32 tiny DiT with a rank-4 LoRA (or DoRA) whose A and B weights are drawn from seed 0 with `std`
    (B starts at zero, which would leave A without a gradient and the adapter without effect). Returns
    (transformer, adapter parameters)."""
    from cosmos_synth.config import TrainConfig
    from cosmos_synth.models import load_pipeline
    from cosmos_synth.train import add_adapter

    transformer = load_pipeline(tiny_model, dtype="float32", device="cpu").transformer
    params = add_adapter(
        transformer,
        TrainConfig(data_dir=Path("."), out_dir=Path("."), adapter=adapter, rank=4, alpha=4, num_frames=9),
    )
    torch.manual_seed(0)
    for name, param in transformer.named_parameters():
        if "lora_A" in name or "lora_B" in name:
            torch.nn.init.normal_(param, std=std)
    return transformer, params


def tiny_dit_forward(transformer) -> torch.Tensor:
    """The tiny DiT's output on fixed inputs (seed 1): one latent clip of 3 x 4 x 6, 8 prompt tokens."""
    g = torch.Generator().manual_seed(1)
    return transformer(
        hidden_states=torch.randn(1, 16, 3, 4, 6, generator=g),
        timestep=torch.full((1, 1, 3, 1, 1), 0.5),
        encoder_hidden_states=torch.randn(1, 8, 32, generator=g),
        condition_mask=torch.zeros(1, 1, 3, 4, 6),
        padding_mask=torch.zeros(1, 1, 32, 48),
        return_dict=False,
    )[0]


@pytest.fixture()
def tiny_dit_run(tiny_model: Path):
    """A factory: forward + backward of a fresh float32 tiny DiT with a LoRA (or DoRA) adapter on fixed inputs.

    `run(adapter="lora", prepare=None, during_backward=None)`: `prepare(transformer)` runs first (checkpointing,
    FP8, ...); `during_backward`, a context manager, wraps the backward pass. The adapter's A and B weights are
    drawn from seed 0 (B starts at zero, which would leave A without a gradient). Returns (output, adapter grads).
    """

    def run(adapter: str = "lora", prepare=None, during_backward=None):
        transformer, params = _tiny_transformer_with_adapter(tiny_model, adapter)
        if prepare is not None:
            prepare(transformer)
        out = tiny_dit_forward(transformer)
        with during_backward or contextlib.nullcontext():
            out.square().mean().backward()
        return out.detach(), [p.grad.clone() for p in params]

    return run


@pytest.fixture()
def tiny_dit_output():
    """`tiny_dit_output(transformer)`: the DiT's output on the fixed inputs of tiny_dit_forward, without gradients."""

    def output(transformer) -> torch.Tensor:
        with torch.no_grad():
            return tiny_dit_forward(transformer)

    return output


@pytest.fixture()
def tiny_lora_adapter(tiny_model: Path):
    """A factory: `tiny_lora_adapter(out_dir)` saves a LoRA for the tiny DiT with random A and B (std 0.5: fusing
    it changes the DiT's output clearly) as a training out_dir would hold it, and returns out_dir."""
    from cosmos_synth.train import save_adapter

    def make(out_dir: Path) -> Path:
        transformer, _ = _tiny_transformer_with_adapter(tiny_model, std=0.5)
        save_adapter(transformer, out_dir)
        return out_dir

    return make


@pytest.fixture()
def tiny_train_config(tiny_model: Path):
    """A factory: `tiny_train_config(data_dir, out_dir, **overrides)`, the TrainConfig the CPU training tests share
    (the tiny model, rank 4, 9 frames, lr 1e-3, float32 on the CPU); overrides set the rest."""
    from cosmos_synth.config import TrainConfig

    def make(data_dir: Path, out_dir: Path, **overrides) -> TrainConfig:
        values = dict(
            model=str(tiny_model),
            revision=None,
            data_dir=data_dir,
            out_dir=out_dir,
            rank=4,
            alpha=4,
            num_frames=9,
            learning_rate=1e-3,
            dtype="float32",
            cpu=True,
        )
        return TrainConfig(**{**values, **overrides})

    return make


@pytest.fixture()
def make_pairs():
    """A factory: `make_pairs(root, n=2)` writes n generation pairs into root, p<i>.png (seeded random 64x96 RGB)
    with p<i>.txt (a prompt), and returns root."""

    def make(root: Path, n: int = 2) -> Path:
        root.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            image = (np.random.RandomState(i).rand(64, 96, 3) * 255).astype(np.uint8)
            Image.fromarray(image).save(root / f"p{i}.png")
            (root / f"p{i}.txt").write_text(f"The robot arm picks up cube {i}.")
        return root

    return make


@pytest.fixture(scope="session")
def clips(demo_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo dataset ingested (9-frame minimum) and preprocessed to 32x48 clips, once per session (read-only)."""
    from cosmos_synth.config import IngestConfig, PreprocessConfig
    from cosmos_synth.ingest import ingest_dataset
    from cosmos_synth.preprocess import preprocess_dataset

    root = tmp_path_factory.mktemp("clips")
    ingest = ingest_dataset(IngestConfig(dataset_dir=demo_dataset, out_dir=root / "ingest", min_frames=9))
    return preprocess_dataset(
        PreprocessConfig(manifest=ingest.manifest, out_dir=root / "pre", height=32, width=48)
    ).out_dir
