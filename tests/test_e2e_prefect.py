"""End to end through a real Prefect server and process worker: deploy prefect.yaml, run finetune-and-generate/demo,
and check what it wrote with the consumers' own readers (diffusers' LoRA loader, h5py, pyarrow + PyAV).

One deployment run (module fixture) serves every test here; `-m e2e` selects them, `-m 'not e2e'` skips them.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import av
import h5py
import numpy as np
import psutil
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cosmos_synth.files import read_jsonl
from cosmos_synth.generate import VIDEOS_DIR
from cosmos_synth.models import load_pipeline
from cosmos_synth.preview import ANIMATION, CONTACT_SHEET, LOSS_CURVE, PREVIEWS_DIR
from cosmos_synth.recipe import load_run_config
from cosmos_synth.tracking import TENSORBOARD_DIR
from flows.finetune_and_generate import OUTPUTS_ARTIFACT
from flows.local_stack import DEMO_DEPLOYMENT, _stop_process, local_stack

REPO_ROOT = Path(__file__).resolve().parent.parent
RUN_TIMEOUT_S = 1500  # the demo takes a few minutes on 2 CPU cores
ADAPTER_FILE = "pytorch_lora_weights.safetensors"
CODEC_TOLERANCE = 4.0  # mean |difference| (0-255) allowed between a frame and its H.264 re-encoding


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """Run the demo deployment once into a temporary run_dir; return (its RunConfig, flow run, artifacts).
    The flow run's log lines are kept as the flow run's "logs"."""
    tmp = tmp_path_factory.mktemp("e2e")
    overrides = {"run_dir": str(tmp / "run"), "cache_dir": str(tmp / "cache")}
    with local_stack(tmp / "prefect") as stack:
        run = stack.run_deployment(DEMO_DEPLOYMENT, params={"overrides": overrides}, timeout_s=RUN_TIMEOUT_S)
        assert run.flow_run_id, f"no flow run id in the CLI output:\n{run.output}"
        flow_run = stack.flow_run(run.flow_run_id)
        artifacts = stack.artifacts(run.flow_run_id)
        running = stack.wait_for_flow_runs()  # its last log lines are sent before its process exits
        assert not running, f"flow-run processes still running after the run ended: {[p.cmdline() for p in running]}"
        flow_run["logs"] = stack.logs(run.flow_run_id)
        started = stack.processes()
    assert len(started) >= 2
    left = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, f"processes left running after the stack stopped: {[p.cmdline() for p in left]}"
    worker_log = (tmp / "prefect" / "worker-cpu.log").read_text(errors="replace")
    assert run.returncode == 0, f"flow run did not complete:\n{run.output}\n--- worker log ---\n{worker_log[-6000:]}"
    return load_run_config("demo", overrides), flow_run, artifacts


@pytest.mark.e2e
def test_flow_run_completes_with_artifacts(demo_run):
    cfg, flow_run, artifacts = demo_run
    assert flow_run["state"]["type"] == "COMPLETED"
    assert flow_run["parameters"]["overrides"]["run_dir"] == str(cfg.run_dir)
    keys = {a["key"] for a in artifacts}
    assert {
        "ingested-samples",
        "preprocessed-clips",
        "latent-cache",
        "training-loss",
        "generated-videos",
        "idm-heldout-error",
        "action-labels",
        "exported-episodes",
        "evaluation",
        "evaluation-report",
        OUTPUTS_ARTIFACT,
    } <= keys
    outputs = next(a for a in artifacts if a["key"] == OUTPUTS_ARTIFACT)["data"]
    assert str(cfg.stage_dir("train").resolve()) in outputs
    assert f"**groot**: `{(cfg.stage_dir('export') / 'groot').resolve()}`" in outputs  # the demo run is labelled


@pytest.mark.e2e
def test_run_logs_hold_the_stages_own_lines(demo_run):
    cfg, flow_run, _ = demo_run
    ours = [
        (log["name"], log["level"], log["message"])
        for log in flow_run["logs"]
        if log["name"].startswith("cosmos_synth")
    ]
    messages = {name: [m for n, _, m in ours if n == name] for name, _, _ in ours}
    assert any(m.startswith("16 samples ingested, 0 quarantined") for m in messages["cosmos_synth.ingest"]), messages
    epochs = [m for m in messages["cosmos_synth.train"] if m.startswith("epoch ")]  # relayed from the child
    num_epochs, num_steps = cfg.train_config().num_epochs, _num_steps(cfg)
    assert len(epochs) == num_epochs, epochs
    assert epochs[-1].startswith(f"epoch {num_epochs}/{num_epochs}: step {num_steps}/{num_steps}, mean loss"), epochs
    assert any(str(cfg.stage_dir("generate") / VIDEOS_DIR) in m for m in messages["cosmos_synth.generate"])
    assert any(m.startswith("exported 4 episodes") for m in messages["cosmos_synth.export"])
    assert {level for _, level, _ in ours} >= {20}  # INFO lines arrive at their level


@pytest.mark.e2e
def test_progress_reaches_the_end_and_tensorboard_has_every_step(demo_run):
    cfg, _, artifacts = demo_run
    progress = {a["key"]: a["data"] for a in artifacts if a["type"] == "progress"}
    assert progress == {
        key: 100.0
        for key in (
            "cache-progress",
            "training-progress",
            "generation-progress",
            "idm-training-progress",
            "labelling-progress",
            "export-progress",
        )
    }
    described = next(a for a in artifacts if a["key"] == "training-progress")["description"]
    assert described.startswith(f"step {_num_steps(cfg)}/{_num_steps(cfg)}, loss "), described
    num_steps = json.loads((cfg.stage_dir("train") / "train_result.json").read_text())["num_steps"]
    events = EventAccumulator(str(cfg.stage_dir("train") / TENSORBOARD_DIR))
    events.Reload()
    for tag in ("loss", "lr", "grad_norm", "step_s"):
        assert [s.step for s in events.Scalars(tag)] == list(range(1, num_steps + 1)), tag
    idm = EventAccumulator(str(cfg.stage_dir("idm") / TENSORBOARD_DIR))
    idm.Reload()
    assert len(idm.Scalars("loss")) == cfg.idm_train_config().num_epochs


@pytest.mark.e2e
def test_outputs_artifact_shows_the_pictures(demo_run):
    cfg, _, artifacts = demo_run
    previews = cfg.stage_dir("generate") / PREVIEWS_DIR
    for path in (previews / CONTACT_SHEET, previews / ANIMATION, cfg.stage_dir("train") / LOSS_CURVE):
        with Image.open(path) as image:
            assert image.format in ("PNG", "GIF") and min(image.size) >= 128, path
    outputs = next(a for a in artifacts if a["key"] == OUTPUTS_ARTIFACT)["data"]
    assert f"**contact_sheet**: `{(previews / CONTACT_SHEET).resolve()}`" in outputs
    assert outputs.count("](data:image/png;base64,") == 2 and outputs.count("](data:image/gif;base64,") == 1


def _num_steps(cfg) -> int:
    """Training steps of the demo: epochs x batches of its training episodes."""
    train = cfg.train_config()
    return train.num_epochs * -(-cfg.demo_config().num_episodes // train.batch_size)


def _transformer_output(pipe) -> torch.Tensor:
    """The DiT's prediction on one fixed input (2 latent frames of 8x12, 8 prompt tokens)."""
    g = torch.Generator().manual_seed(0)
    frames, height, width = 2, 8, 12
    with torch.no_grad():
        return pipe.transformer(
            hidden_states=torch.randn(1, 16, frames, height, width, generator=g),
            condition_mask=torch.zeros(1, 1, frames, height, width),
            timestep=torch.full((1, 1, frames, 1, 1), 0.5),
            encoder_hidden_states=torch.randn(1, 8, pipe.transformer.config.crossattn_proj_in_channels, generator=g),
            padding_mask=torch.zeros(1, 1, height * 8, width * 8),
            return_dict=False,
        )[0]


@pytest.mark.e2e
def test_adapter_loads_into_a_fresh_pipeline_and_changes_it(demo_run):
    cfg, _, _ = demo_run
    adapters = sorted(cfg.run_dir.rglob(ADAPTER_FILE))
    assert len(adapters) >= 1, f"no {ADAPTER_FILE} under {cfg.run_dir}"
    adapter = cfg.stage_dir("train") / ADAPTER_FILE
    assert adapter in adapters
    pipe = load_pipeline(cfg.resolved_model, dtype="float32", device="cpu")
    before = _transformer_output(pipe)
    pipe.load_lora_weights(str(adapter.parent), weight_name=ADAPTER_FILE, adapter_name="demo")
    assert pipe.get_active_adapters() == ["demo"]
    after = _transformer_output(pipe)
    assert torch.isfinite(after).all()
    assert not torch.allclose(before, after, atol=1e-6), "the trained adapter does not change the transformer"


@pytest.mark.e2e
def test_generates_one_video_per_test_pair(demo_run):
    cfg, _, _ = demo_run
    videos = sorted((cfg.stage_dir("generate") / VIDEOS_DIR).glob("*.mp4"))
    assert len(videos) >= 4
    with av.open(str(videos[0])) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == cfg.num_frames
    assert frames[0].shape == (cfg.height, cfg.width, 3)


def _decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def _lerobot_episodes(root: Path, camera: str) -> dict[int, np.ndarray]:
    """episode_index -> (T, H, W, 3) uint8, read as a LeRobot v3.0 consumer does: info.json, episodes, data, video."""
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    key = f"observation.images.{camera}"
    assert info["features"][key]["dtype"] == "video"
    episodes = pq.read_table(root / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pylist()
    data = pq.read_table(root / info["data_path"].format(chunk_index=0, file_index=0)).to_pandas()
    assert len(data) == info["total_frames"] and len(episodes) == info["total_episodes"]
    decoded = {}
    for ep in episodes:
        video = root / info["video_path"].format(
            video_key=key, chunk_index=ep[f"videos/{key}/chunk_index"], file_index=ep[f"videos/{key}/file_index"]
        )
        frames = _decode(video)
        first = round(ep[f"videos/{key}/from_timestamp"] * info["fps"])
        rows = data[data["episode_index"] == ep["episode_index"]].sort_values("frame_index")
        assert len(rows) == ep["length"]
        decoded[ep["episode_index"]] = np.stack([frames[first + round(t * info["fps"])] for t in rows["timestamp"]])
    return decoded


@pytest.mark.e2e
def test_hdf5_and_lerobot_hold_the_same_episodes(demo_run):
    cfg, _, _ = demo_run
    camera = cfg.export_config().camera
    hdf5_files = sorted(cfg.stage_dir("export").rglob("*.hdf5"))
    assert len(hdf5_files) == 1
    lerobot_roots = [p.parent.parent for p in (cfg.stage_dir("export") / "lerobot").rglob("meta/info.json")]
    assert len(lerobot_roots) == 1
    lerobot = _lerobot_episodes(lerobot_roots[0], camera)
    with h5py.File(hdf5_files[0], "r") as f:
        demos = sorted(f["data"], key=lambda name: int(name.split("_")[1]))
        assert len(demos) == len(lerobot) >= 4
        for i, name in enumerate(demos):
            frames = f["data"][name]["obs"][f"{camera}_image"][()]
            # robomimic holds the generated video's decoded frames exactly ...
            sample_id = f["data"][name].attrs["sample_id"]
            generated = np.stack(_decode(cfg.stage_dir("generate") / VIDEOS_DIR / f"{sample_id}.mp4"))
            np.testing.assert_array_equal(frames, generated)
            # ... and LeRobot the same frames through one more H.264 encoding: each frame matches its own counterpart
            # within codec tolerance, and the episode matches better aligned than shifted by one frame (an off-by-one
            # in the timestamps fails; frame by frame the tiny model's nearly static tails cannot tell).
            assert frames.dtype == np.uint8 and frames.shape == lerobot[i].shape
            ours, theirs = frames.astype(np.float32), lerobot[i].astype(np.float32)
            diff = np.abs(ours - theirs).mean(axis=(1, 2, 3))
            shifted = np.abs(ours[1:] - theirs[:-1]).mean(axis=(1, 2, 3))
            assert diff.max() < CODEC_TOLERANCE, f"{name} vs episode {i}: per-frame mean |diff| {diff.round(2)}"
            assert diff[1:].mean() < shifted.mean(), f"{name}: misaligned ({diff.round(2)} vs {shifted.round(2)})"


@pytest.mark.e2e
def test_exports_are_action_labelled_trajectories(demo_run):
    cfg, _, artifacts = demo_run
    idm = next(a for a in artifacts if a["key"] == "idm-heldout-error")["data"]
    assert "delta_x" in idm and "baseline_mse" in idm
    metrics = json.loads((cfg.stage_dir("idm") / "idm_metrics.json").read_text())["per_action"]
    for name, m in metrics.items():  # the IDM beats predicting the mean action on held-out real episodes
        assert m["mse"] < 0.5 * m["baseline_mse"], (name, m)
    labels = read_jsonl(cfg.stage_dir("label") / "manifest.jsonl")
    assert len(labels) >= 4 and all(r["action_names"] == ["delta_x", "delta_y", "gripper_command"] for r in labels)
    with h5py.File(next((cfg.stage_dir("export") / "robomimic").glob("*.hdf5")), "r") as f:
        for i, row in enumerate(labels):
            actions = f[f"data/demo_{i}/actions"][:]
            assert actions.shape == (row["num_frames"], 3) and -1.0 <= actions.min() and actions.max() <= 1.0
        assert list(f["data"].attrs["action_names"]) == ["delta_x", "delta_y", "gripper_command"]
    data = pq.read_table(cfg.stage_dir("export") / "lerobot" / "data" / "chunk-000" / "file-000.parquet")
    raw = np.concatenate([np.load(r["actions"])["action"] for r in labels])
    np.testing.assert_allclose(np.stack(data.column("action").to_pylist()), raw, rtol=1e-6)


def test_library_never_imports_prefect():
    offenders = []
    for path in sorted((REPO_ROOT / "cosmos_synth").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            offenders += [
                f"{path.relative_to(REPO_ROOT)}:{node.lineno} imports {n}"
                for n in names
                if n == "prefect" or n.startswith("prefect.")
            ]
    assert not offenders, (
        "cosmos_synth/ must not import prefect (orchestration lives in tasks/ and flows/):\n" + "\n".join(offenders)
    )


STUBBORN = """import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited by the child below: SIGTERM moves neither
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print(child.pid, flush=True)
time.sleep(600)
"""


def test_stopped_processes_have_exited_when_stop_returns():
    """What the stack starts is gone the moment stop() returns, even what ignored SIGTERM and needed SIGKILL."""
    proc = subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE, text=True, start_new_session=True)
    child = psutil.Process(int(proc.stdout.readline()))  # both are running once the pid is printed
    family = [psutil.Process(proc.pid), child]
    _stop_process(proc, num_terms=2, grace_s=0.2)
    proc.stdout.close()
    assert [p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in family] == [False, False]


@pytest.mark.e2e
def test_evaluation_compares_base_and_lora_on_the_heldout_episodes(demo_run):
    cfg, _, artifacts = demo_run
    rows = json.loads((cfg.stage_dir("evaluate") / "metrics.json").read_text())["rows"]
    num_heldout = cfg.demo_config().num_test_pairs
    assert [(r["model"], r["task_family"], r["episodes"]) for r in rows] == [
        (model, "push", num_heldout) for model in ("copy-first-frame", "base", "lora")
    ]
    for row in rows:
        assert 0.0 <= row["success_rate"] <= 1.0 and len(row["success_ci95"]) == 2 and row["psnr_db"] > 10
    assert rows[1]["frame0_psnr_db"] > 25 and rows[2]["idm_action_mse"] is not None
    assert not (cfg.stage_dir("evaluate") / "lora").exists()  # the generate stage's videos were reused
    outputs = next(a for a in artifacts if a["key"] == OUTPUTS_ARTIFACT)["data"]
    assert "### Held-out evaluation" in outputs and "| lora | push |" in outputs
