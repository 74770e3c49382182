"""Kill -9 in the middle of training, generation and export, then run again: nothing lost, nothing twice, nothing
half-written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py

from cosmos_synth.config import GenerateConfig, TrainConfig, config_to_dict
from cosmos_synth.files import read_jsonl
from cosmos_synth.generate import generate_videos, video_is_complete
from cosmos_synth.launch import accelerate_command, launch_training
from cosmos_synth.train import LOSS_LOG, latest_checkpoint

REPO = Path(__file__).resolve().parent.parent


def _wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def _start(code: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_training_killed_mid_run_resumes_from_its_checkpoint(tiny_model, clips, tmp_path):
    cfg = TrainConfig(model=str(tiny_model), revision=None, data_dir=clips, out_dir=tmp_path / "train", rank=4,
                      alpha=4, num_frames=9, num_epochs=40, learning_rate=1e-3, num_warmup_steps=1,
                      checkpoint_every_epochs=1, dtype="float32", cpu=True, gradient_checkpointing=False)
    (tmp_path / "train").mkdir()
    config = tmp_path / "train" / "train_config.json"
    config.write_text(json.dumps(config_to_dict(cfg)))
    child = subprocess.Popen(accelerate_command(cfg, config), cwd=REPO, start_new_session=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    _wait_for(lambda: (latest_checkpoint(cfg.out_dir) or Path("epoch_000000")).name >= "epoch_000002", 240,
              "the second checkpoint")
    _kill(child)  # the whole accelerate process group, mid-epoch
    killed_at = json.loads((latest_checkpoint(cfg.out_dir) / "DONE").read_text())["step"]
    assert not (cfg.out_dir / "pytorch_lora_weights.safetensors").exists()

    resumed = launch_training(cfg)  # the same out_dir: continues from the latest checkpoint
    log = read_jsonl(cfg.out_dir / LOSS_LOG)
    assert resumed.num_steps == 40 * 4 and [r["step"] for r in log] == list(range(1, 161))
    assert killed_at >= 8 and "resumed from" in (cfg.out_dir / "train.log").read_text()
    assert resumed.adapter_file.is_file()


def _pairs(root: Path, image: Path, prompts: list[str]) -> Path:
    """A pairs folder: p<i>.png (copies of `image`) + p<i>.txt for each prompt."""
    root.mkdir()
    for i, prompt in enumerate(prompts):
        (root / f"p{i}.png").write_bytes(image.read_bytes())
        (root / f"p{i}.txt").write_text(prompt)
    return root


def test_generation_killed_mid_run_yields_each_sample_once(tiny_model, demo_dataset, tmp_path):
    pairs = _pairs(tmp_path / "pairs", demo_dataset / "test" / "pair_0000.png",
                   [f"The robot arm picks up cube {i}." for i in range(4)])
    cfg = GenerateConfig(model=str(tiny_model), revision=None, pairs_dir=pairs, out_dir=tmp_path / "gen", height=32,
                         width=48, num_frames=9, num_steps=4, dtype="float32", device="cpu")
    (tmp_path / "gen.json").write_text(json.dumps(config_to_dict(cfg)))
    child = _start("from pathlib import Path; from cosmos_synth.config import GenerateConfig, load_config; "
                   "from cosmos_synth.generate import generate_videos; "
                   f"generate_videos(load_config(GenerateConfig, Path({str(tmp_path / 'gen.json')!r})))")
    videos = tmp_path / "gen" / "videos"
    _wait_for(lambda: len(list(videos.glob("p*.mp4"))) >= 1, 240, "the first video")
    _kill(child)
    before = sorted(p.name for p in videos.glob("p*.mp4"))
    assert len(before) < 4

    result = generate_videos(cfg)
    rows = read_jsonl(result.manifest)
    assert [r["sample_id"] for r in rows] == ["p0", "p1", "p2", "p3"]  # the expected set, each once
    assert result.num_skipped >= len(before) - 1  # finished videos were not redone (the last may have been torn)
    assert all(video_is_complete(videos / f"p{i}.mp4", 9) for i in range(4))
    assert sorted(p.name for p in videos.iterdir()) == [f"p{i}.mp4" for i in range(4)]  # no partial file left


def test_export_killed_mid_write_leaves_no_readable_wrong_file(tiny_model, demo_dataset, tmp_path):
    from cosmos_synth.config import ExportConfig
    from cosmos_synth.export import export_episodes, export_paths

    pairs = _pairs(tmp_path / "pairs", demo_dataset / "test" / "pair_0001.png", [f"Prompt {i}." for i in range(6)])
    gen = generate_videos(GenerateConfig(model=str(tiny_model), revision=None, pairs_dir=pairs, out_dir=tmp_path / "g",
                                         height=32, width=48, num_frames=9, num_steps=1, dtype="float32",
                                         device="cpu"))
    cfg = ExportConfig(manifest=gen.manifest, out_dir=tmp_path / "export")
    (tmp_path / "export.json").write_text(json.dumps(config_to_dict(cfg)))
    hdf5, lerobot = export_paths(cfg)
    for delay_s in (0.5, 1.5, 3.0):  # kill at different points of the write
        child = _start("from pathlib import Path; from cosmos_synth.config import ExportConfig, load_config; "
                       "from cosmos_synth.export import export_episodes; "
                       f"export_episodes(load_config(ExportConfig, Path({str(tmp_path / 'export.json')!r})))")
        time.sleep(delay_s)
        _kill(child)
        if hdf5.exists():  # either absent or complete: never readable but wrong
            with h5py.File(hdf5, "r") as f:
                assert len(f["data"]) == 6 and f["data"].attrs["total"] == 6 * 9
        if lerobot.exists():
            info = json.loads((lerobot / "meta" / "info.json").read_text())
            assert (info["total_episodes"], info["total_frames"]) == (6, 6 * 9)
        assert not [p for p in (tmp_path / "export").rglob("*") if p.is_file() and p.parent == tmp_path / "export"
                    and p.suffix not in (".json",)]
    result = export_episodes(cfg)
    assert result.num_episodes == 6 and result.hdf5_path.is_file() and (result.lerobot_dir / "meta").is_dir()
