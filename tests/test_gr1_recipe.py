"""The gr1 recipe: reference hyper-parameters, Hub-shaped local folders, the guardrail refusal."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cosmos_synth.files import read_jsonl
from cosmos_synth.generate import list_pairs
from cosmos_synth.ingest import ingest_dataset
from cosmos_synth.models import TINY_MARKER, load_pipeline
from cosmos_synth.prepare import prepare_source
from cosmos_synth.recipe import load_run_config
from cosmos_synth.video import write_video

# docs/recipe.md, the published command at 432x768.
REFERENCE = {
    "height": 432,
    "width": 768,
    "num_frames": 93,
    "rank": 32,
    "alpha": 32,
    "learning_rate": 2**-14.5,
    "weight_decay": 0.001,
    "max_grad_norm": 1.0,
    "num_warmup_steps": 1000,
    "num_training_steps": 100_000,
    "f_max": 0.5,
    "f_min": 0.2,
    "cfg_dropout_prob": 0.2,
    "cond_frame_probs": {1: 0.5, 2: 0.5},
    "cond_frame_timestep": 0.0001,
    "checkpoint_every_epochs": 100,
    "num_steps": 36,
    "guidance_scale": 7.0,
    "fps": 16,
    "target_modules": ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2"),
    "num_epochs": 500,
}


def test_gr1_defaults_are_the_reference_recipe():
    cfg = load_run_config("gr1")
    train, generate = cfg.train_config(), cfg.generate_config(None)
    got = {
        **{k: getattr(train, k) for k in REFERENCE if hasattr(train, k)},
        **{k: getattr(generate, k) for k in ("height", "width", "num_frames", "num_steps", "guidance_scale", "fps")},
    }
    assert got == REFERENCE
    assert (cfg.model, cfg.revision) == ("nvidia/Cosmos-Predict2.5-2B", "diffusers/base/post-trained")
    assert train.cond_frame_probs == {1: 0.5, 2: 0.5} and all(isinstance(k, int) for k in train.cond_frame_probs)
    assert cfg.caption_prefix == "The robot arm is performing a task. " and cfg.guardrail


def test_overrides_reach_the_stage_configs():
    cfg = load_run_config("gr1", {"train.rank": 16, "train.cond_frame_probs": {"2": 1.0}, "num_frames": 29})
    train = cfg.train_config()
    assert (train.rank, train.cond_frame_probs, train.num_frames) == (16, {2: 1.0}, 29)
    assert cfg.generate_config(None).num_frames == 29
    with pytest.raises(ValueError, match=r"gr1/recipe\.toml: unknown key train\.rnak \(did you mean train\.rank\?\)"):
        load_run_config("gr1", {"train.rnak": 16})
    with pytest.raises(ValueError, match=r"gr1/recipe\.toml: unknown key hieght \(did you mean height\?\)"):
        load_run_config("gr1", {"hieght": 16})


def _gr1_like(root: Path) -> Path:
    """A folder shaped like nvidia/GR1-100: metadata.csv (header, file names, quoted captions) + gr1/*.mp4."""
    frames = (np.random.RandomState(0).rand(9, 32, 48, 3) * 255).astype(np.uint8)
    for name in ("clip_a", "clip_b"):
        write_video(frames, root / "gr1" / f"{name}.mp4", fps=16)
    (root / "metadata.csv").write_text(
        'file_name,text\nclip_a.mp4,"Pick up the apple, then place it in the basket."\ngr1/clip_b.mp4,Open the drawer\n'
    )
    return root


def _eval_like(root: Path) -> Path:
    """A folder shaped like nvidia/EVAL-175: gr1_object/<id>.png + <id>.txt."""
    pairs = root / "gr1_object"
    pairs.mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.full((32, 48, 3), 40 * i, np.uint8)).save(pairs / f"{i:03d}.png")
        (pairs / f"{i:03d}.txt").write_text(f"Prompt number {i}.\n")
    return root


def test_hub_layouts_ingest_with_the_reference_preprocessing(tmp_path):
    gr1, eval_root = _gr1_like(tmp_path / "GR1-100"), _eval_like(tmp_path / "EVAL-175")
    cfg = load_run_config(
        "gr1",
        {"dataset_repo": str(gr1), "pairs_repo": str(eval_root), "run_dir": str(tmp_path / "run"), "num_frames": 9},
    )
    assert prepare_source(cfg) == gr1
    rows = read_jsonl(ingest_dataset(cfg.ingest_config()).manifest)
    assert [r["sample_id"] for r in rows] == ["clip_a", "clip_b"]
    assert rows[0]["caption"] == (
        "The robot arm is performing a task. Pick up the apple, then place it in the basket."
    )  # first comma only, no quotes
    assert rows[1]["caption"] == "The robot arm is performing a task. Open the drawer"
    pairs = list_pairs(cfg.generate_config(None).pairs_dir)
    assert [(p.sample_id, p.prompt) for p in pairs] == [("000", "Prompt number 0."), ("001", "Prompt number 1.")]


def test_missing_gr1_video_names_the_file(tmp_path):
    gr1 = _gr1_like(tmp_path / "GR1-100")
    (gr1 / "gr1" / "clip_b.mp4").unlink()
    cfg = load_run_config("gr1", {"dataset_repo": str(gr1), "run_dir": str(tmp_path / "run"), "num_frames": 9})
    with pytest.raises(ValueError, match=r"metadata.csv line 3: video gr1/clip_b.mp4 does not exist"):
        ingest_dataset(cfg.ingest_config())


def test_hub_download_offline_says_what_to_do(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from cosmos_synth.sources.hub import fetch_gr1

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match=r"nvidia/GR1-100@main is not available offline.*local folder"):
        fetch_gr1("nvidia/GR1-100", revision="main", local_dir=tmp_path / "gr1")


def test_nvidia_weights_need_the_guardrail_or_an_explicit_opt_out(tiny_model, tmp_path, caplog):
    from diffusers.utils import is_cosmos_guardrail_available

    if is_cosmos_guardrail_available():
        pytest.skip("cosmos-guardrail is installed here; the refusal path cannot be exercised")
    weights = shutil.copytree(tiny_model, tmp_path / "not-tiny")
    (weights / TINY_MARKER).unlink()  # now it looks like any other Cosmos checkpoint
    with pytest.raises(ValueError, match=r"cosmos-guardrail.*pip install 'cosmos-synth\[guardrail\]'.*guardrail=false"):
        load_pipeline(weights, dtype="float32", device="cpu")
    pipe = load_pipeline(weights, dtype="float32", device="cpu", guardrail=False)
    assert type(pipe.safety_checker).__name__ == "NoOpSafetyChecker"
    assert "guardrail disabled" in caplog.text
