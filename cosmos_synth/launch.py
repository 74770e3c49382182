"""Start training as a child process under `accelerate launch`, so one code path serves 1 CPU process or N GPUs.

The child runs in its own process session; if the parent is interrupted or the child fails, the whole group is
killed, so no orphaned GPU processes outlive a cancelled run.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cosmos_synth.config import TrainConfig, config_to_dict, write_config
from cosmos_synth.files import read_jsonl
from cosmos_synth.models import trained_weights_file
from cosmos_synth.train import LOSS_LOG, RESULT_FILE

logger = logging.getLogger(__name__)

LOG_FILE = "train.log"
LOG_TAIL_LINES = 40  # lines of the child's log quoted in an error


@dataclass(frozen=True, kw_only=True)
class TrainResult:
    out_dir: Path
    adapter_dir: Path                   # what generate's `adapter` takes: the training out_dir
    adapter_file: Path                  # the adapter file (LoRA/DoRA) or the full fine-tune's DiT weights
    num_steps: int
    final_loss: float

    def summary_rows(self) -> list[dict]:
        losses = read_jsonl(self.out_dir / LOSS_LOG) if (self.out_dir / LOSS_LOG).is_file() else []
        every = max(1, len(losses) // 20)  # about 20 rows whatever the run length
        rows = [{"step": r["step"], "epoch": r["epoch"], "loss": round(r["loss"], 6), "lr": r["lr"]}
                for r in losses[::every]]
        return rows or [{"step": self.num_steps, "epoch": None, "loss": self.final_loss, "lr": None}]


def accelerate_command(cfg: TrainConfig, config_path: Path) -> list[str]:
    """The `accelerate launch` command line for this config."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(cfg.num_processes),
               "--num_machines", "1", "--dynamo_backend", "no",
               "--mixed_precision", "bf16" if cfg.dtype == "bfloat16" and not cfg.cpu else "no"]
    if cfg.num_processes > 1:
        # The torchrun-style launcher (accelerate allows only one of --cpu/--multi_gpu); with cfg.cpu the training
        # script's Accelerator(cpu=True) makes the processes talk over gloo instead of NCCL.
        command.append("--multi_gpu")
    elif cfg.cpu:
        command.append("--cpu")
    return command + ["-m", "cosmos_synth.train", str(config_path)]


def _finished_result(cfg: TrainConfig) -> dict | None:
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
    return json.loads(result.read_text())


def launch_training(cfg: TrainConfig, *, env: dict[str, str] | None = None) -> TrainResult:
    """Train in a child `accelerate launch` process; resume if `cfg.out_dir` holds checkpoints.

    A finished run with the identical config is not repeated. `env` replaces the child's environment
    (default: inherit this process's).
    """
    finished = _finished_result(cfg)
    if finished is None:
        (cfg.out_dir / RESULT_FILE).unlink(missing_ok=True)
        config_path = write_config(cfg, cfg.out_dir, "train")
        _run_child(accelerate_command(cfg, config_path), cfg.out_dir / LOG_FILE, env)
        finished = json.loads((cfg.out_dir / RESULT_FILE).read_text())
    else:
        logger.info("training already finished in %s with this config; reusing it", cfg.out_dir)
    return TrainResult(out_dir=cfg.out_dir, adapter_dir=cfg.out_dir, adapter_file=trained_weights_file(cfg.out_dir),
                       num_steps=finished["num_steps"], final_loss=finished["final_loss"])


def _run_child(command: list[str], log_path: Path, env: dict[str, str] | None) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    logger.info("launching: %s (log: %s)", " ".join(command), log_path)
    with log_path.open("ab") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                 env=env)
        try:
            code = child.wait()
        except BaseException:  # interrupted or cancelled: take the whole process group down with us
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            raise
    if code != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        raise RuntimeError(f"training exited with code {code}; last lines of {log_path}:\n" + "\n".join(tail))
