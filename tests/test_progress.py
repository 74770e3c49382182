"""What a person watching a run sees: progress updates, the training child's log lines relayed, TensorBoard scalars,
the loss curve, and the contact sheet and animated preview of generated videos."""

from __future__ import annotations

import ast
import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
from accelerate.state import AcceleratorState
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from typer.testing import CliRunner

from cosmos_synth.cli import TqdmProgress, app
from cosmos_synth.config import GenerateConfig, IDMTrainConfig, IngestConfig, TrainConfig
from cosmos_synth.files import read_jsonl
from cosmos_synth.generate import generate_videos
from cosmos_synth.idm import train_idm
from cosmos_synth.ingest import ingest_dataset
from cosmos_synth.launch import launch_training
from cosmos_synth.layout import ANIMATION, CONTACT_SHEET, LOSS_CURVE, LOSS_LOG, PREVIEWS_DIR
from cosmos_synth.preview import FRAMES_PER_VIDEO, THUMB_HEIGHT, frame_indices, moving_average
from cosmos_synth.progress import ProgressReporter, ProgressUpdate
from cosmos_synth.tracking import TENSORBOARD_DIR
from cosmos_synth.video import read_video


def test_update_describes_itself_for_people():
    update = ProgressUpdate(
        stage="train",
        done=48,
        total=96,
        unit="step",
        elapsed_s=40.0,
        rate=1.31,
        metrics={"loss": 0.51234, "lr": 0.0004938461538461538},
    )
    assert update.fraction == 0.5 and update.eta_s == pytest.approx(48 / 1.31)
    assert update.describe() == "step 48/96, loss 0.512, lr 0.000494, 1.31 step/s, ETA 0:00:37"
    slow = ProgressUpdate(stage="generate", done=1, total=175, unit="video", elapsed_s=40.0, rate=1 / 38.9)
    assert slow.describe() == "video 1/175, 38.9 s/video, ETA 1:52:49"
    done = ProgressUpdate(stage="export", done=4, total=4, unit="episode", elapsed_s=1.0)
    assert done.fraction == 1.0 and done.eta_s == 0.0 and done.describe() == "episode 4/4"


def test_reporter_measures_the_rate_from_its_first_update(monkeypatch):
    ProgressReporter(None, "label", total=3, unit="video").start().advance()  # no callback: nothing to call
    clock = iter([100.0, 100.0, 110.0, 130.0])  # construction, start, two advances
    monkeypatch.setattr("cosmos_synth.progress.time.monotonic", lambda: next(clock))
    updates: list[ProgressUpdate] = []
    report = ProgressReporter(updates.append, "generate", total=10, unit="video", done=6).start()  # 6 already there
    report.advance()
    report.advance(loss=0.5)
    assert [(u.done, u.rate) for u in updates] == [(6, None), (7, 0.1), (8, 2 / 30)]  # not 8 / 30: 6 were skipped
    assert updates[-1].metrics == {"loss": 0.5} and updates[-1].eta_s == pytest.approx(30.0)


def test_tqdm_bars_stay_quiet_off_a_terminal(capsys):
    bars = TqdmProgress()
    for done in range(4):
        bars(ProgressUpdate(stage="generate", done=done, total=3, unit="video", elapsed_s=float(done)))
    bars.close()
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""  # pytest's stderr is no terminal, like CI's


def test_progress_artifact_is_updated_a_few_hundred_times_in_a_five_hour_run(monkeypatch):
    import tasks.progress

    sent: list[float] = []
    monkeypatch.setattr(
        tasks.progress,
        "create_progress_artifact",
        lambda progress, key, description: sent.append(progress) or "artifact-id",
    )
    monkeypatch.setattr(
        tasks.progress, "update_progress_artifact", lambda artifact_id, progress, description: sent.append(progress)
    )
    now = [0.0]
    monkeypatch.setattr(tasks.progress.time, "monotonic", lambda: now[0])
    artifact = tasks.progress.ProgressArtifact("training-progress")
    for step in range(9201):  # 9,200 steps of 2 s: a GR1 run
        now[0] = 2.0 * step
        artifact(ProgressUpdate(stage="train", done=step, total=9200, unit="step", elapsed_s=now[0]))
    assert 300 <= len(sent) <= 320 and sent[0] == 0.0 and sent[-1] == 100.0  # one a minute, and the end
    assert sent == sorted(sent)


@pytest.mark.slow
def test_training_reports_steps_relays_epochs_and_writes_tensorboard(tiny_train_config, clips, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="cosmos_synth")
    updates: list[ProgressUpdate] = []
    cfg = tiny_train_config(
        clips,
        tmp_path / "train",
        num_epochs=2,
        num_warmup_steps=2,
        num_training_steps=50,
        checkpoint_every_epochs=2,
        gradient_checkpointing=False,
    )
    result = launch_training(cfg, progress=updates.append)
    assert result.num_steps == 8  # 4 clips x 2 epochs

    # progress: followed from loss.jsonl while the child ran, ending at 8/8 with the last step's loss
    losses = read_jsonl(tmp_path / "train" / LOSS_LOG)
    assert [r["step"] for r in losses] == list(range(1, 9)) and all(r["num_steps"] == 8 for r in losses)
    assert updates and all(u.stage == "train" and u.unit == "step" and u.total == 8 for u in updates)
    assert [u.done for u in updates] == sorted(u.done for u in updates) and updates[-1].done == 8
    assert updates[-1].metrics["loss"] == losses[-1]["loss"] and updates[-1].metrics["lr"] == losses[-1]["lr"]

    # the child's per-epoch lines, logged again in this process under their logger at their level
    relayed = [r for r in caplog.records if r.name == "cosmos_synth.train"]
    epochs = [r.getMessage() for r in relayed if r.getMessage().startswith("epoch ")]
    mean_loss = np.mean([r["loss"] for r in losses if r["epoch"] == 1])
    assert (
        epochs[0].startswith("epoch 1/2: step 4/8, mean loss")
        and epochs[1] == f"epoch 2/2: step 8/8, mean loss {mean_loss:.5f}"
    )
    assert all(r.levelno == logging.INFO for r in relayed)

    # TensorBoard: one scalar per step for each tracked value, equal to loss.jsonl's
    events = EventAccumulator(str(tmp_path / "train" / TENSORBOARD_DIR))
    events.Reload()
    assert {"loss", "lr", "grad_norm", "step_s", "peak_rss_gib"} <= set(events.Tags()["scalars"])
    scalars = events.Scalars("loss")
    assert [s.step for s in scalars] == list(range(1, result.num_steps + 1))
    np.testing.assert_allclose([s.value for s in scalars], [r["loss"] for r in losses], rtol=1e-6)
    assert len(events.Scalars("grad_norm")) == result.num_steps

    # the loss curve, and the artifact's table rounded for reading
    with Image.open(result.loss_curve) as curve:
        assert result.loss_curve == tmp_path / "train" / LOSS_CURVE and curve.size == (720, 400)
    assert all(row["lr"] == float(f"{row['lr']:.3g}") for row in result.summary_rows())


def test_idm_training_reports_epochs_and_writes_tensorboard(demo_dataset, tmp_path):
    AcceleratorState._reset_state(reset_partial_state=True)  # as in a fresh flow-run process: no accelerate state
    ingest = ingest_dataset(IngestConfig(dataset_dir=demo_dataset, out_dir=tmp_path / "ingest", min_frames=9))
    updates: list[ProgressUpdate] = []
    train_idm(IDMTrainConfig(manifest=ingest.manifest, out_dir=tmp_path / "idm", num_epochs=3), progress=updates.append)
    assert [(u.stage, u.done, u.total, u.unit) for u in updates] == [("train-idm", n, 3, "epoch") for n in range(4)]
    events = EventAccumulator(str(tmp_path / "idm" / TENSORBOARD_DIR))
    events.Reload()
    assert [s.step for s in events.Scalars("loss")] == [1, 2, 3]
    np.testing.assert_allclose(
        [s.value for s in events.Scalars("loss")], [u.metrics["loss"] for u in updates[1:]], rtol=1e-6
    )


def test_report_to_is_checked_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="report_to='mlflow'.*'tensorboard'"):
        TrainConfig(data_dir=tmp_path, out_dir=tmp_path, report_to="mlflow")
    assert TrainConfig(data_dir=tmp_path, out_dir=tmp_path, report_to="none").report_to == "none"
    try:
        import wandb  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match=r"report_to='wandb' needs the wandb package.*pip install wandb"):
            TrainConfig(data_dir=tmp_path, out_dir=tmp_path, report_to="wandb")
        with pytest.raises(ValueError, match=r"report_to='wandb' needs the wandb package"):
            IDMTrainConfig(manifest=tmp_path, out_dir=tmp_path, report_to="wandb")


def _sheet_finds(sheet: np.ndarray, thumb: np.ndarray) -> bool:
    """Whether `thumb` is pasted somewhere in `sheet`, left-aligned at the margin (column 12)."""
    height, width = thumb.shape[:2]
    return any(np.array_equal(sheet[y : y + height, 12 : 12 + width], thumb) for y in range(sheet.shape[0] - height))


def test_generation_reports_videos_and_draws_previews(tiny_model, tmp_path, make_pairs):
    cfg = GenerateConfig(
        model=str(tiny_model),
        pairs_dir=make_pairs(tmp_path / "pairs", 3),
        out_dir=tmp_path / "gen",
        height=64,
        width=96,
        num_frames=9,
        num_steps=2,
        dtype="float32",
        device="cpu",
    )
    updates: list[ProgressUpdate] = []
    result = generate_videos(cfg, progress=updates.append)
    assert [(u.done, u.total, u.unit) for u in updates] == [
        (0, 3, "video"),
        (1, 3, "video"),
        (2, 3, "video"),
        (3, 3, "video"),
    ]
    previews = result.previews
    assert previews.contact_sheet == cfg.out_dir / PREVIEWS_DIR / CONTACT_SHEET and previews.num_videos == 3

    # contact sheet: 5 frames per video, 64x96 frames enlarged 2x (nearest) to 128x192, first frame at the margin
    frames, _ = read_video(cfg.out_dir / "videos" / "p1.mp4")
    assert frame_indices(len(frames)) == [0, 2, 4, 6, 8] and FRAMES_PER_VIDEO == 5
    with Image.open(previews.contact_sheet) as image:
        assert image.format == "PNG" and image.width == 2 * 12 + 5 * (192 + 6) - 6
        sheet = np.asarray(image.convert("RGB"))
    scale = THUMB_HEIGHT // 64
    assert _sheet_finds(sheet, frames[0].repeat(scale, axis=0).repeat(scale, axis=1))

    # animated preview: the 3 videos side by side, every frame, looping at the videos' fps
    with Image.open(previews.animation) as gif:
        assert gif.format == "GIF" and gif.n_frames == 9 and gif.size == (3 * 192 + 2 * 6, 128)
        assert gif.info["loop"] == 0 and gif.info["duration"] == 60  # 1000 / 16 fps in GIF's 10 ms steps

    # a rerun skips every video: one update, already at the end
    updates.clear()
    generate_videos(cfg, progress=updates.append)
    assert [(u.done, u.total) for u in updates] == [(3, 3)]


def test_preview_command_draws_an_existing_runs_pictures(tiny_model, tmp_path, make_pairs):
    run = tmp_path / "run"
    generate_videos(
        GenerateConfig(
            model=str(tiny_model),
            pairs_dir=make_pairs(tmp_path / "pairs", 2),
            out_dir=run / "generate",
            height=64,
            width=96,
            num_frames=9,
            num_steps=1,
            dtype="float32",
            device="cpu",
        )
    )
    for path in (run / "generate" / PREVIEWS_DIR).iterdir():
        path.unlink()
    (run / "train").mkdir()
    (run / "train" / LOSS_LOG).write_text(
        "".join(json.dumps({"epoch": 0, "step": s, "loss": 1 / s, "lr": 1e-3}) + "\n" for s in range(1, 31))
    )
    result = CliRunner().invoke(app, ["preview", str(run)])
    assert result.exit_code == 0, result.output
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert lines["loss_curve"] == str(run / "train" / LOSS_CURVE)
    assert lines["contact_sheet"] == str(run / "generate" / PREVIEWS_DIR / CONTACT_SHEET)
    assert lines["animation"] == str(run / "generate" / PREVIEWS_DIR / ANIMATION)
    assert all(Path(lines[k]).is_file() for k in ("loss_curve", "contact_sheet", "animation"))
    assert lines["TensorBoard"] == f"tensorboard --logdir {run}"

    empty = CliRunner().invoke(app, ["preview", str(tmp_path / "nothing")])
    message = re.sub(r"[\s│]+", " ", empty.output)  # the error as typer boxes it, lines joined again
    assert empty.exit_code == 2 and "holds neither train/loss.jsonl nor generate/manifest.jsonl" in message


def test_moving_average_by_hand():
    np.testing.assert_allclose(moving_average(np.array([1.0, 3.0, 5.0, 7.0]), 2), [1.0, 2.0, 4.0, 6.0])


def test_progress_tracking_and_previews_neither_print_nor_read_the_environment():
    import cosmos_synth.preview
    import cosmos_synth.progress
    import cosmos_synth.tracking

    for module in (cosmos_synth.progress, cosmos_synth.tracking, cosmos_synth.preview):
        for node in ast.walk(ast.parse(Path(module.__file__).read_text())):
            assert not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print"), module
            assert not (isinstance(node, ast.Attribute) and node.attr == "environ"), module
            assert not (isinstance(node, ast.Name) and node.id == "tqdm"), module  # bars belong to the CLI
