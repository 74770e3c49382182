"""Kill -9 in the middle of training, generation and export, then run again: nothing lost, nothing twice, nothing
half-written.

Each child (tests/kill_at.py) kills itself at a point the test names up front (after checkpoint 2, after video 2,
before episode writers commit, ...), so every run checks the same state, exactly; nothing waits on the clock.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from cosmos_synth.chain import chunk_folder
from cosmos_synth.config import ExportConfig, GenerateConfig, config_to_dict, write_config
from cosmos_synth.export import export_episodes, export_paths
from cosmos_synth.files import read_jsonl
from cosmos_synth.generate import generate_video, generate_videos, list_pairs, video_is_complete
from cosmos_synth.launch import accelerate_command, launch_training
from cosmos_synth.layout import CHECKPOINTS_DIR, LOSS_LOG, RESULT_FILE, VIDEOS_DIR
from cosmos_synth.models import ADAPTER_FILE, load_pipeline
from cosmos_synth.train import latest_checkpoint
from cosmos_synth.video import read_video

pytestmark = pytest.mark.slow  # each test trains, generates or exports in killed child processes

REPO = Path(__file__).resolve().parent.parent
KILL_AT = Path(__file__).with_name("kill_at.py")


def _run(command: list[str]) -> tuple[int, str, int]:
    """Run a child to its end (it kills itself at its kill point): (exit code, stderr, pid)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    with subprocess.Popen(
        command, cwd=REPO, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    ) as child:
        _, stderr = child.communicate()
    return child.returncode, stderr, child.pid


def _killed_at(stage: str, config: Path, point: str) -> int:
    """Run `kill_at.py <stage> <config> <point>`; check that SIGKILL ended it there; return its pid."""
    code, stderr, pid = _run([sys.executable, str(KILL_AT), stage, str(config), point])
    assert code == -signal.SIGKILL, f"{stage} {point}: exit {code}\n{stderr[-3000:]}"
    return pid


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_training_killed_after_its_second_checkpoint_resumes_from_it(tiny_train_config, clips, tmp_path):
    cfg = tiny_train_config(
        clips,
        tmp_path / "train",
        num_epochs=4,
        num_warmup_steps=1,
        checkpoint_every_epochs=1,
        gradient_checkpointing=False,
    )
    config = write_config(cfg, cfg.out_dir, "train")
    command = accelerate_command(cfg, config)
    assert command[-3:] == ["-m", "cosmos_synth.train", str(config)]
    code, stderr, _ = _run(command[:-3] + [str(KILL_AT), "train", str(config), "checkpoint:2"])
    assert code != 0 and "died with <Signals.SIGKILL: 9>" in stderr, stderr[-3000:]  # the launcher saw the kill

    checkpoints = cfg.out_dir / CHECKPOINTS_DIR
    assert _names(checkpoints) == ["epoch_000001", "epoch_000002"]  # killed before epoch 3 ended
    assert json.loads((latest_checkpoint(cfg.out_dir) / "DONE").read_text()) == {"epoch": 2, "step": 8}
    before = read_jsonl(cfg.out_dir / LOSS_LOG)
    assert [r["step"] for r in before] == list(range(1, 9))  # 4 clips, one step each, for 2 epochs; nothing after
    assert not (cfg.out_dir / ADAPTER_FILE).exists() and not (cfg.out_dir / RESULT_FILE).exists()

    resumed = launch_training(cfg)  # the same out_dir: continues from the latest checkpoint
    log = read_jsonl(cfg.out_dir / LOSS_LOG)
    assert resumed.num_steps == 4 * 4 and [r["step"] for r in log] == list(range(1, 17))
    assert log[:8] == before  # the steps before the kill were neither redone nor lost
    assert f"resumed from {checkpoints / 'epoch_000002'} (epoch 2, step 8)" in (cfg.out_dir / "train.log").read_text()
    assert _names(checkpoints) == [f"epoch_00000{i}" for i in range(1, 5)]
    assert resumed.adapter_file.is_file()


def _pairs(root: Path, image: Path, prompts: list[str]) -> Path:
    """A pairs folder: p<i>.png (copies of `image`) + p<i>.txt for each prompt."""
    root.mkdir()
    for i, prompt in enumerate(prompts):
        (root / f"p{i}.png").write_bytes(image.read_bytes())
        (root / f"p{i}.txt").write_text(prompt)
    return root


def _generate_config(tiny_model: Path, pairs: Path, out_dir: Path, **kw) -> tuple[GenerateConfig, Path]:
    """The tiny model's generation settings (9 frames of 32x48, 4 steps, float32 on the CPU; `kw` sets others), and
    the config file a child reads them from (<out_dir>.json)."""
    values = dict(
        model=str(tiny_model),
        revision=None,
        pairs_dir=pairs,
        out_dir=out_dir,
        height=32,
        width=48,
        num_frames=9,
        num_steps=4,
        dtype="float32",
        device="cpu",
    )
    cfg = GenerateConfig(**{**values, **kw})
    config = out_dir.with_suffix(".json")
    config.write_text(json.dumps(config_to_dict(cfg)))
    return cfg, config


def test_generation_killed_mid_run_yields_each_sample_once(tiny_model, demo_dataset, tmp_path):
    pairs = _pairs(
        tmp_path / "pairs",
        demo_dataset / "test" / "pair_0000.png",
        [f"The robot arm picks up cube {i}." for i in range(4)],
    )
    cfg, config = _generate_config(tiny_model, pairs, tmp_path / "gen")
    videos, manifest = cfg.out_dir / VIDEOS_DIR, cfg.out_dir / "manifest.jsonl"

    _killed_at("generate", config, "video:2")  # killed once video 2 of 4 is written and recorded
    assert _names(videos) == ["p0.mp4", "p1.mp4"]  # exactly the finished videos, no temporary file
    assert [r["sample_id"] for r in read_jsonl(manifest)] == ["p0", "p1"]
    assert all(video_is_complete(videos / f"p{i}.mp4", 9) for i in range(2))
    inodes = {name: (videos / name).stat().st_ino for name in _names(videos)}

    _killed_at("generate", config, "unrecorded:1")  # the rerun writes p2, then dies before the manifest lists it
    assert _names(videos) == ["p0.mp4", "p1.mp4", "p2.mp4"]
    assert [r["sample_id"] for r in read_jsonl(manifest)] == ["p0", "p1"]
    inodes["p2.mp4"] = (videos / "p2.mp4").stat().st_ino

    result = generate_videos(cfg)
    assert (result.num_videos, result.num_skipped) == (4, 2)  # p0 and p1 kept; p2 (unrecorded) redone; p3 new
    rows = read_jsonl(result.manifest)
    assert [r["sample_id"] for r in rows] == ["p0", "p1", "p2", "p3"] and [r["seed"] for r in rows] == [0, 1, 2, 3]
    assert all(video_is_complete(videos / f"p{i}.mp4", 9) for i in range(4))
    assert _names(videos) == [f"p{i}.mp4" for i in range(4)]  # each sample once, no partial file left
    # a video is written under a temporary name and renamed: a kept file keeps its inode, a redone one does not
    assert [(videos / n).stat().st_ino == inodes[n] for n in ("p0.mp4", "p1.mp4", "p2.mp4")] == [True, True, False]


def test_long_video_killed_mid_chain_resumes_at_its_last_finished_chunk(tiny_model, demo_dataset, tmp_path, caplog):
    pairs = _pairs(tmp_path / "pairs", demo_dataset / "test" / "pair_0000.png", ["The robot arm picks up cube 0."])
    # 3 chunks of 9 frames, each continuing from the last frame of the one before
    cfg, config = _generate_config(
        tiny_model, pairs, tmp_path / "gen", num_frames=25, chunk_frames=9, chunk_overlap_frames=1, num_steps=2
    )
    videos, chunks = cfg.out_dir / VIDEOS_DIR, chunk_folder(cfg.out_dir / VIDEOS_DIR, "p0")

    _killed_at("generate", config, "chunk:2")  # killed while saving chunk 3 of 3: chunks 1 and 2 are kept
    assert _names(videos) == [chunks.name] and _names(chunks) == ["chunk_000.npy", "chunk_001.npy", "row.json"]
    kept = [np.load(chunks / name) for name in ("chunk_000.npy", "chunk_001.npy")]

    with caplog.at_level(logging.INFO, logger="cosmos_synth.chain"):
        result = generate_videos(cfg)
    assert "p0: resuming at chunk 3/3" in caplog.text
    assert "chunk 1/3" not in caplog.text and "chunk 2/3" not in caplog.text  # nothing before chunk 3 was redone
    assert "chunk 3/3 from frame 17" in caplog.text
    assert _names(videos) == ["p0.mp4"]  # the chunk folder is gone once the video and its row are written
    assert read_jsonl(result.manifest)[0]["chunk_starts"] == [0, 9, 17]

    whole = generate_videos(dataclasses.replace(cfg, out_dir=tmp_path / "uninterrupted"))
    resumed_frames = read_video(videos / "p0.mp4")[0]
    assert resumed_frames.shape == (25, 32, 48, 3)
    assert np.array_equal(resumed_frames, read_video(Path(read_jsonl(whole.manifest)[0]["video"]))[0])
    # the kept chunks are the uninterrupted run's own first frames (before H.264 touches them)
    frames = generate_video(load_pipeline(tiny_model, dtype="float32", device="cpu"), cfg, list_pairs(pairs)[0])
    assert np.array_equal(np.concatenate(kept), frames[:17])


def test_export_killed_mid_write_leaves_no_readable_wrong_file(tiny_model, demo_dataset, tmp_path):
    pairs = _pairs(tmp_path / "pairs", demo_dataset / "test" / "pair_0001.png", [f"Prompt {i}." for i in range(6)])
    gen = generate_videos(_generate_config(tiny_model, pairs, tmp_path / "g", num_steps=1)[0])
    cfg = ExportConfig(manifest=gen.manifest, out_dir=tmp_path / "export")
    config = tmp_path / "export.json"
    config.write_text(json.dumps(config_to_dict(cfg)))
    hdf5, lerobot = export_paths(cfg)

    def check_hdf5() -> None:
        with h5py.File(hdf5, "r") as f:
            assert len(f["data"]) == 6 and f["data"].attrs["total"] == 6 * 9

    # (kill point, the formats renamed into place before it): mid-stream, all written and verified, between renames
    for point, committed in [
        ("episode:1", ()),
        ("episode:4", ()),
        ("commit:robomimic", ()),
        ("commit:lerobot", ("robomimic",)),
    ]:
        pid = _killed_at("export", config, point)
        # each format is absent or complete, never readable but wrong; what is half-written is only the killed
        # run's own temporaries (the next run removes them)
        tmp_hdf5, tmp_lerobot = f".{hdf5.name}.tmp{pid}{hdf5.suffix}", f".{lerobot.name}.tmp{pid}"
        assert _names(hdf5.parent) == sorted([hdf5.name if "robomimic" in committed else tmp_hdf5]), point
        assert _names(cfg.out_dir) == sorted([hdf5.parent.name, tmp_lerobot]), point
        if "robomimic" in committed:
            check_hdf5()

    result = export_episodes(cfg)
    assert (result.num_episodes, result.num_frames) == (6, 6 * 9)
    check_hdf5()
    info = json.loads((lerobot / "meta" / "info.json").read_text())
    assert (info["total_episodes"], info["total_frames"]) == (6, 6 * 9)
    assert _names(cfg.out_dir) == ["export_config.json", lerobot.name, hdf5.parent.name]
    assert list(cfg.out_dir.rglob(".*")) == []  # no temporary file or folder left anywhere
