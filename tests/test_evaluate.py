"""Evaluate: the metrics file, its baseline, the judge on demo prompts (and none on others), reused videos, and the
shipped demo world model doing its pretraining family better than copying the first frame."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cosmos_synth.chunk_metrics import chunk_rows, seam_score
from cosmos_synth.config import DemoDataConfig, EvaluateConfig
from cosmos_synth.evaluate import BASELINE, ROW_FIELDS, evaluate_models, image_metrics
from cosmos_synth.files import read_jsonl
from cosmos_synth.models import DEMO_WORLD_MODEL
from cosmos_synth.sources.layout import HELDOUT_DIR, METADATA_CSV, TEST_DIR
from cosmos_synth.sources.procedural import write_demo_dataset
from cosmos_synth.stats import wilson_interval


def _config(model: Path, data: Path, out: Path, **kw) -> EvaluateConfig:
    values = dict(
        episodes_dir=data / HELDOUT_DIR,
        out_dir=out,
        model=str(model),
        revision=None,
        height=64,
        width=96,
        num_frames=17,
        num_steps=2,
        guidance_scale=1.0,
        dtype="float32",
        device="cpu",
    )
    return EvaluateConfig(**{**values, **kw})


def test_metrics_file_has_a_row_per_model_and_family_with_the_baseline(tiny_model, demo_dataset, tmp_path):
    result = evaluate_models(_config(tiny_model, demo_dataset, tmp_path / "eval"))
    rows = json.loads((tmp_path / "eval" / "metrics.json").read_text())["rows"]
    assert [(r["model"], r["task_family"]) for r in rows] == [(BASELINE, "pick_place"), ("base", "pick_place")]
    assert set(ROW_FIELDS) <= set(rows[0]) and rows == list(result.rows)
    for row in rows:
        assert row["episodes"] == 2 and 0.0 <= row["success_rate"] <= 1.0
        low, high = row["success_ci95"]
        assert 0.0 <= low <= row["success_rate"] <= high <= 1.0
        assert row["psnr_db"] > 0 and -1.0 <= row["ssim"] <= 1.0 and row["track_error"] >= 0
    assert rows[0]["frame0_psnr_db"] is None and rows[0]["success_rate"] == 0.0  # a still video does no task
    assert rows[1]["frame0_psnr_db"] > 10
    per_episode = read_jsonl(tmp_path / "eval" / "episodes.jsonl")
    assert sorted((r["model"], r["episode"]) for r in per_episode) == sorted(
        (m, f"pair_{k:04d}") for m in (BASELINE, "base") for k in range(2)
    )
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "| base | pick_place | 2 |" in report and "![sheet-pick_place](sheet-pick_place.png)" in report
    assert (tmp_path / "eval" / "sheet-pick_place.png").stat().st_size > 1000
    assert len(list((tmp_path / "eval" / "base" / "videos").glob("*.mp4"))) == 2


def test_other_captions_get_the_image_metrics_only(tiny_model, demo_dataset, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(demo_dataset, data)
    csv = data / HELDOUT_DIR / METADATA_CSV
    csv.write_text(
        "".join(f"{line.partition(',')[0]},A robot arm tidies a table.\n" for line in csv.read_text().splitlines())
    )
    rows = evaluate_models(_config(tiny_model, data, tmp_path / "eval")).rows
    assert [r["task_family"] for r in rows] == ["all", "all"]
    assert all(r["success_rate"] is None and r["track_error"] is None and r["psnr_db"] > 0 for r in rows)
    with pytest.raises(ValueError, match="judge='demo' but some captions .* are not demo-world prompts"):
        evaluate_models(_config(tiny_model, data, tmp_path / "eval2", judge="demo"))


def test_videos_of_the_generate_stage_are_reused(tiny_model, demo_dataset, tmp_path):
    from cosmos_synth.config import GenerateConfig
    from cosmos_synth.generate import generate_videos

    gen = generate_videos(
        GenerateConfig(
            model=str(tiny_model),
            revision=None,
            pairs_dir=demo_dataset / TEST_DIR,
            out_dir=tmp_path / "generate",
            height=64,
            width=96,
            num_frames=17,
            num_steps=2,
            guidance_scale=1.0,
            dtype="float32",
            device="cpu",
        )
    )
    cfg = _config(
        tiny_model,
        demo_dataset,
        tmp_path / "eval",
        pairs_dir=demo_dataset / TEST_DIR,
        models={"base": None},
        generated={"base": str(gen.out_dir)},
    )
    rows = evaluate_models(cfg).rows
    assert not (tmp_path / "eval" / "base").exists()  # nothing generated again
    assert rows[1]["model"] == "base" and rows[1]["episodes"] == 2
    with pytest.raises(ValueError, match=r"generated names \['lora'\] are not in models"):
        _config(tiny_model, demo_dataset, tmp_path / "x", generated={"lora": "y"})


def test_image_metrics_and_intervals():
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (5, 16, 24, 3), dtype=np.uint8)
    same = image_metrics(real, real.copy())
    assert same["ssim"] == pytest.approx(1.0) and same["frame0_psnr_db"] is None and same["psnr_db"] > 80
    noisy = np.clip(real.astype(int) + rng.integers(-20, 21, real.shape), 0, 255).astype(np.uint8)
    worse = image_metrics(real, noisy)
    assert 20 < worse["psnr_db"] < 35 and worse["ssim"] < 0.99
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    low, high = wilson_interval(40, 50)
    assert low == pytest.approx(0.6696, abs=1e-3) and high == pytest.approx(0.8876, abs=1e-3)


def test_seam_score_and_chunk_rows_by_hand():
    # a grey ramp brightening by 2 levels a frame, by 6 into frames 4 and 8 (the first new frames of chunks 2 and 3)
    levels = np.cumsum([0] + [6 if t in (4, 8) else 2 for t in range(1, 11)])
    frames = np.broadcast_to(levels[:, None, None, None], (11, 4, 6, 3)).astype(np.uint8)
    assert seam_score(frames, [0, 4, 8]) == pytest.approx(3.0)
    assert seam_score(frames, [0]) is None  # one chunk: no seam
    assert seam_score(np.zeros((9, 4, 6, 3), np.uint8), [0, 4]) is None  # nothing moves
    rows = chunk_rows(frames, [0, 4, 8])
    assert [(r["chunk"], r["start_frame"], r["end_frame"]) for r in rows] == [(1, 0, 4), (2, 4, 8), (3, 8, 11)]
    assert [r["seam_score"] for r in rows] == [None, pytest.approx(3.0), pytest.approx(3.0)]


def test_long_episodes_are_measured_per_chunk(tiny_model, demo_dataset, tmp_path):
    # the demo dataset's held-out episodes have 33 frames: two chunks of 17, the second continuing the first's last
    cfg = _config(tiny_model, demo_dataset, tmp_path / "eval", num_frames=33, chunk_frames=17, chunk_overlap_frames=1)
    result = evaluate_models(cfg)
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["chunks"] == list(result.chunk_rows)
    keys = [(r["model"], r["task_family"], r["chunk"], r["end_frame"], r["episodes"]) for r in result.chunk_rows]
    assert keys == [("real", "pick_place", 1, 17, 2), ("real", "pick_place", 2, 33, 2)] + [
        ("base", "pick_place", 1, 17, 2),
        ("base", "pick_place", 2, 33, 2),
    ]
    real_1, real_2, base_1, base_2 = result.chunk_rows
    assert (real_1["success_rate"], real_2["success_rate"]) == (0.0, 1.0)  # the expert is done only at the end
    assert (real_1["success_ci95"], real_2["success_ci95"]) == (wilson_interval(0, 2), wilson_interval(2, 2))
    assert real_1["track_error"] < 0.05 and real_2["track_error"] < 0.05  # the judge follows real frames closely
    assert real_1["seam_score"] is None and 0.5 < real_2["seam_score"] < 2.0  # a real episode has no seam
    assert base_1["seam_score"] is None and base_2["seam_score"] > 0 and base_2["track_error"] >= 0
    assert len(read_jsonl(tmp_path / "eval" / "chunks.jsonl")) == 2 * 2 * 2  # (real, base) x episodes x chunks
    baseline, base = result.rows
    assert baseline["seam_score"] is None and base["seam_score"] > 0  # a still video has no frame change at all
    assert baseline["real_seam_score"] == base["real_seam_score"] == pytest.approx(real_2["seam_score"])
    for row in read_jsonl(tmp_path / "eval" / "base" / "manifest.jsonl"):
        assert row["chunk_starts"] == [0, 17] and row["num_frames"] == 33
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "## Per chunk" in report and "| real | pick_place | 2 | 33 | 2 | 1.000 |" in report


@pytest.fixture(scope="module")
def pick_place_heldout(tmp_path_factory) -> Path:
    return write_demo_dataset(
        DemoDataConfig(out_dir=tmp_path_factory.mktemp("pp") / "data", num_episodes=1, num_test_pairs=2)
    )


@pytest.mark.slow
def test_the_shipped_world_model_does_its_pretraining_family(pick_place_heldout, tmp_path):
    """The demo world model, from a held-out first frame and its prompt, does the task: the judge accepts it, it
    beats copying the first frame on the frames it has to predict, and its first frame is the seed image."""
    rows = evaluate_models(_config(DEMO_WORLD_MODEL, pick_place_heldout, tmp_path / "eval", num_steps=10)).rows
    baseline, model = rows
    assert model["model"] == "base" and model["success_rate"] == 1.0 and model["physics_rate"] == 1.0
    assert model["distractor_rate"] == 0.0 and model["track_error"] < 0.06
    assert model["psnr_db"] > baseline["psnr_db"] + 3 and model["ssim"] > baseline["ssim"]
    assert model["frame0_psnr_db"] > 28


@pytest.mark.slow
def test_a_flipped_velocity_sign_is_caught(pick_place_heldout, tmp_path, monkeypatch):
    """A fine-tune whose objective has the velocity's sign flipped (a classic bug) must not pass evaluation: ten
    LoRA steps on the demo world model with the flipped target, and the judge and PSNR say so, where the base model
    passes on the same episode."""
    import cosmos_synth.train as train_module
    from cosmos_synth.cache import encode_latent_cache
    from cosmos_synth.config import CacheConfig, IngestConfig, PreprocessConfig, TrainConfig
    from cosmos_synth.ingest import ingest_dataset
    from cosmos_synth.loss import FlowInputs, build_flow_inputs
    from cosmos_synth.preprocess import preprocess_dataset

    ingest = ingest_dataset(
        IngestConfig(dataset_dir=pick_place_heldout / HELDOUT_DIR, out_dir=tmp_path / "ingest", min_frames=17)
    )
    clips = preprocess_dataset(
        PreprocessConfig(manifest=ingest.manifest, out_dir=tmp_path / "pre", height=64, width=96)
    ).out_dir
    cache = encode_latent_cache(
        CacheConfig(
            model=str(DEMO_WORLD_MODEL),
            revision=None,
            data_dir=clips,
            out_dir=tmp_path / "cache",
            num_frames=17,
            num_windows=1,
            dtype="float32",
            device="cpu",
        )
    ).out_dir

    def flipped(*args, **kwargs) -> FlowInputs:
        inputs = build_flow_inputs(*args, **kwargs)
        return FlowInputs(
            noisy=inputs.noisy, timestep=inputs.timestep, cond_mask=inputs.cond_mask, target=-inputs.target
        )

    monkeypatch.setattr(train_module, "build_flow_inputs", flipped)
    train_module.train(
        TrainConfig(
            model=str(DEMO_WORLD_MODEL),
            revision=None,
            data_dir=clips,
            out_dir=tmp_path / "t",
            adapter="lora",
            rank=16,
            alpha=16,
            num_frames=17,
            num_epochs=10,
            batch_size=2,
            learning_rate=1e-3,
            num_warmup_steps=1,
            f_min=1.0,
            f_max=1.0,
            dtype="float32",
            cpu=True,
            gradient_checkpointing=False,
            latent_cache=cache,
            cond_frame_probs={1: 1.0},
            checkpoint_every_epochs=100,
            report_to="none",
        )
    )
    cfg = _config(
        DEMO_WORLD_MODEL,
        pick_place_heldout,
        tmp_path / "eval",
        num_steps=10,
        max_episodes=1,
        models={"base": None, "flipped": str(tmp_path / "t")},
    )
    _, base, broken = evaluate_models(cfg).rows
    assert base["success_rate"] == 1.0 and broken["success_rate"] == 0.0
    assert broken["psnr_db"] < base["psnr_db"] - 3 and broken["track_error"] > 3 * base["track_error"]
