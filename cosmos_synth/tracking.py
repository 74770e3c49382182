"""Experiment tracking through accelerate's trackers: TensorBoard event files in the stage's folder (the default), or
a wandb run (`report_to = "wandb"`: needs the wandb package and `wandb login`), or none.

    tensorboard --logdir runs/demo/train      # loss, lr, grad_norm, step_s, peak memory per step
    tensorboard --logdir runs/demo            # the video model and the IDM side by side

Training (cosmos_synth.train) hands `log_with(report_to)` to its Accelerator and starts it with
:func:`init_trackers`; the IDM trains without an Accelerator and takes a tracker from :func:`tracker_run`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import resource
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

TENSORBOARD_DIR = "tensorboard"  # <out_dir>/tensorboard/events.out.tfevents.*
WANDB_PROJECT = "cosmos-synth"  # the wandb project every run logs to; the run is named after the run folder


def check_report_to(report_to: str) -> None:
    """A config's report_to, checked before any work: a known tracker whose package is installed."""
    if report_to not in ("tensorboard", "wandb", "none"):
        raise ValueError(
            f"report_to={report_to!r}: use 'tensorboard' (event files in out_dir/{TENSORBOARD_DIR}/), "
            "'wandb' (a run in the wandb project cosmos-synth) or 'none'."
        )
    if report_to != "none" and importlib.util.find_spec(report_to) is None:
        login = " and `wandb login`" if report_to == "wandb" else ""
        raise ValueError(
            f"report_to={report_to!r} needs the {report_to} package, which is not installed: "
            f"`pip install {report_to}`{login}, or set report_to='tensorboard' or 'none'."
        )


def log_with(report_to: str) -> list[str] | None:
    """The Accelerator's `log_with` for a config's report_to ("tensorboard", "wandb", "none")."""
    return None if report_to == "none" else [report_to]


def _project_and_kwargs(report_to: str, out_dir: Path, run_name: str) -> tuple[str, dict[str, Any]]:
    if report_to == "tensorboard":
        return TENSORBOARD_DIR, {}  # accelerate writes to <logging_dir>/<project name>
    return WANDB_PROJECT, {"name": run_name, "dir": str(out_dir)}


def init_trackers(
    accelerator, report_to: str, out_dir: Path, run_name: str, config: dict[str, Any], *, purge_step: int | None = None
) -> None:
    """Start the trackers of an Accelerator made with log_with(report_to) and project_dir=out_dir.

    wandb records `config` with the run; TensorBoard does not (its hparams writer adds a second event file per run),
    and the stage's `<stage>_config.json` sits next to the event files anyway. `purge_step`: the run's first
    step (1, or the step after the checkpoint it resumes from); TensorBoard hides what an interrupted earlier run
    logged from there on, so no step shows twice."""
    if report_to == "none":
        return
    project, kwargs = _project_and_kwargs(report_to, out_dir, run_name)
    if report_to == "tensorboard" and purge_step is not None:
        kwargs["purge_step"] = purge_step
    accelerator.init_trackers(project, config=config if report_to == "wandb" else None, init_kwargs={report_to: kwargs})


@contextlib.contextmanager
def tracker_run(report_to: str, out_dir: Path, run_name: str, config: dict[str, Any]) -> Iterator[Any]:
    """An accelerate tracker (`log(values, step)`) for a loop without an Accelerator, finished on exit; None for
    report_to="none"."""
    from accelerate import PartialState
    from accelerate.tracking import TensorBoardTracker, WandBTracker

    if report_to == "none":
        yield None
        return
    PartialState()  # accelerate's trackers log through accelerate's logger, which needs its (one-process) state
    project, kwargs = _project_and_kwargs(report_to, out_dir, run_name)
    tracker = (
        TensorBoardTracker(project, str(out_dir)) if report_to == "tensorboard" else WandBTracker(project, **kwargs)
    )
    tracker.start()
    if report_to == "wandb":
        tracker.store_init_configuration(config)
    try:
        yield tracker
    finally:
        tracker.finish()


def peak_memory_gib(device: torch.device) -> dict[str, float]:
    """{"peak_gpu_gib": ...} (allocated by torch) on CUDA, else {"peak_rss_gib": ...} (this process's peak RSS)."""
    if device.type == "cuda":
        return {"peak_gpu_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 3)}
    return {"peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)}  # KiB on Linux
