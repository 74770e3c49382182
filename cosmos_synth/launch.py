"""Start training as a child process under `accelerate launch`, so one code path serves 1 CPU process or N GPUs.

The child runs in its own process session; if the parent is interrupted or the child fails, the whole group is
killed, so no orphaned GPU processes outlive a cancelled run. While it runs, the parent follows what it appends
(:class:`ChildFollower`): each new `loss.jsonl` row becomes a progress update (step, loss, lr, rate, time left), and
each `cosmos_synth` line of its `train.log` (the steps planned, one line per epoch with its mean loss, a resume) is
logged again by the parent at its level, so it reaches the CLI's console and the Prefect run's logs.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from cosmos_synth.config import TrainConfig, config_to_dict, write_config
from cosmos_synth.layout import LOSS_CURVE, LOSS_LOG, RESULT_FILE, TRAIN_LOG
from cosmos_synth.models import trained_weights_file
from cosmos_synth.preview import write_loss_curve
from cosmos_synth.progress import Progress, ProgressReporter
from cosmos_synth.train import TrainResult

logger = logging.getLogger(__name__)

LOG_TAIL_LINES = 40  # lines of the child's log quoted in an error
POLL_S = 2.0  # how often the parent reads what the child appended
# A line of the child's log (cosmos_synth.train.LOG_FORMAT: asctime, logger name, level, message) from one of ours.
CHILD_LINE = re.compile(
    r"^\S+ \S+ (?P<name>cosmos_synth[\w.]*) (?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) "
    r"(?P<message>.*)$"
)


def accelerate_command(cfg: TrainConfig, config_path: Path) -> list[str]:
    """The `accelerate launch` command line for this config."""
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        str(cfg.num_processes),
        "--num_machines",
        "1",
        "--dynamo_backend",
        "no",
        "--mixed_precision",
        "bf16" if cfg.dtype == "bfloat16" and not cfg.cpu else "no",
    ]
    if cfg.num_processes > 1:
        # The torchrun-style launcher (accelerate allows only one of --cpu/--multi_gpu); with cfg.cpu the training
        # script's Accelerator(cpu=True) makes the processes talk over gloo instead of NCCL.
        command.append("--multi_gpu")
    elif cfg.cpu:
        command.append("--cpu")
    return command + ["-m", "cosmos_synth.train", str(config_path)]


def _finished_result(cfg: TrainConfig) -> TrainResult | None:
    """The result of an earlier run with the identical config, if its adapter is there."""
    result, saved = cfg.out_dir / RESULT_FILE, cfg.out_dir / "train_config.json"
    if not (result.is_file() and saved.is_file()):
        return None
    try:
        trained_weights_file(cfg.out_dir)
    except ValueError:
        return None
    if json.loads(saved.read_text()) != json.loads(json.dumps(config_to_dict(cfg))):
        return None
    return TrainResult.read(cfg.out_dir)


def launch_training(
    cfg: TrainConfig, *, env: dict[str, str] | None = None, progress: Progress | None = None
) -> TrainResult:
    """Train in a child `accelerate launch` process; resume if `cfg.out_dir` holds checkpoints.

    A finished run with the identical config is not repeated. `env` replaces the child's environment
    (default: inherit this process's). `progress` gets the steps as the child logs them (see ChildFollower).
    The loss curve (loss_curve.png) is drawn from loss.jsonl at the end.
    """
    finished = _finished_result(cfg)
    if finished is None:
        (cfg.out_dir / RESULT_FILE).unlink(missing_ok=True)
        config_path = write_config(cfg, cfg.out_dir, "train")
        _run_child(
            accelerate_command(cfg, config_path), cfg.out_dir / TRAIN_LOG, env, ChildFollower(cfg.out_dir, progress)
        )
        finished = TrainResult.read(cfg.out_dir)
        write_loss_curve(cfg.out_dir / LOSS_LOG, cfg.out_dir / LOSS_CURVE)
    else:
        logger.info("training already finished in %s with this config; reusing it", cfg.out_dir)
        ProgressReporter(progress, "train", total=finished.num_steps, unit="step", done=finished.num_steps).start()
        if not (cfg.out_dir / LOSS_CURVE).is_file():
            write_loss_curve(cfg.out_dir / LOSS_LOG, cfg.out_dir / LOSS_CURVE)
    logger.info(
        "training: %d steps, final loss %.4g; adapter %s, loss curve %s, TensorBoard logs %s",
        finished.num_steps,
        finished.final_loss,
        finished.adapter_file,
        finished.loss_curve,
        cfg.out_dir,
    )
    return finished


def _run_child(command: list[str], log_path: Path, env: dict[str, str] | None, follower: ChildFollower) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    logger.info("launching: %s (log: %s)", " ".join(command), log_path)
    with log_path.open("ab") as log:
        follower.start(log_offset=log.tell())
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        try:
            while True:
                try:
                    code = child.wait(timeout=POLL_S)
                    break
                except subprocess.TimeoutExpired:
                    follower.poll()
        except BaseException:  # interrupted or cancelled: take the whole process group down with us
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            raise
    follower.poll()  # what the child wrote last
    if code != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        raise RuntimeError(f"training exited with code {code}; last lines of {log_path}:\n" + "\n".join(tail))


class ChildFollower:
    """Reads what the training child appends to its folder, between waits for it.

    `loss.jsonl` rows (one per step, with the planned `num_steps`) become progress updates; a file older than the
    launch holds an earlier run's rows, which the child removes or rewrites before its first step, so it is ignored.
    `train.log` lines of cosmos_synth loggers are logged again here, under the same logger name and level.
    """

    def __init__(self, out_dir: Path, progress: Progress | None) -> None:
        self.log, self.losses = _Tail(out_dir / TRAIN_LOG), _Tail(out_dir / LOSS_LOG)
        self.progress, self.report = progress, None
        self.launched_ns, self.loss_inode = 0, None

    def start(self, log_offset: int) -> None:
        self.launched_ns, self.log.offset = time.time_ns(), log_offset

    def poll(self) -> None:
        for line in self.log.read():
            match = CHILD_LINE.match(line)
            if match:
                logging.getLogger(match["name"]).log(getattr(logging, match["level"]), "%s", match["message"])
        try:
            stat = self.losses.path.stat()
        except FileNotFoundError:  # not written yet, or just removed by a fresh start
            return
        if stat.st_mtime_ns < self.launched_ns:
            return
        if stat.st_ino != self.loss_inode or stat.st_size < self.losses.offset:  # rewritten on resume
            self.loss_inode, self.losses.offset = stat.st_ino, 0
        rows = [json.loads(line) for line in self.losses.read()]
        if rows:
            last = rows[-1]
            if self.report is None:
                self.report = ProgressReporter(self.progress, "train", total=last["num_steps"], unit="step")
            self.report.update(last["step"], loss=last["loss"], lr=last["lr"])


class _Tail:
    """The complete lines appended to a file since the last read (a line still being written waits for the next)."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, 0

    def read(self) -> list[str]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:  # not written yet, or removed by the child in between
            return []
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        return complete.decode(errors="replace").splitlines()
