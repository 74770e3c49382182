"""The child side of tests/test_kill_resume.py: run one stage in this process, SIGKILL it at a point chosen up front.

    python tests/kill_at.py generate <generate_config.json> video:<k>        once video k is written and in the manifest
    python tests/kill_at.py generate <generate_config.json> unrecorded:<k>   once video k is written, before the
                                                                             manifest lists it
    python tests/kill_at.py generate <generate_config.json> chunk:<k>        once chunk k of a long video is saved
                                                                             (chunks of this run, from 1)
    python tests/kill_at.py export <export_config.json> episode:<k>          once episode k is in every writer
    python tests/kill_at.py export <export_config.json> commit:<writer>      just before `robomimic` or `lerobot` is
                                                                             renamed into place (all written, verified)
    accelerate launch ... tests/kill_at.py train <train_config.json> checkpoint:<epoch>
                                                                             once checkpoint <epoch> is complete

k counts the videos / episodes this run writes, from 1. SIGKILL, like `kill -9`: no exception handler, `finally` or
atexit hook runs, so the files left are exactly what a crash at that point leaves. Reaching the end without dying
exits with code 3, so the test can tell "never got there" from "killed there".
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from cosmos_synth.config import ExportConfig, GenerateConfig, load_config

NEVER_REACHED = 3


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def die_on_call(function, number: int):
    """`function`, except that its `number`-th call (from 1) kills the process before doing anything."""
    calls = 0

    def wrapped(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == number:
            die()
        return function(*args, **kwargs)

    return wrapped


def die_after(k: int):
    """A progress callback that kills the process once k more units are done than at its first update."""
    first = None

    def progress(update) -> None:
        nonlocal first
        first = update.done if first is None else first
        if update.done - first == k:
            die()

    return progress


def generate(config: Path, point: str, k: int) -> None:
    import cosmos_synth.generate as generate_module

    assert point in ("video", "unrecorded", "chunk"), point
    if point == "unrecorded":  # the manifest is rewritten once after each video: its k-th write records video k
        generate_module.write_jsonl = die_on_call(generate_module.write_jsonl, k)
    if point == "chunk":  # a long video saves each chunk once it is generated: dying at save k + 1 keeps k chunks
        from cosmos_synth.chain import ChunkStore

        ChunkStore.save = die_on_call(ChunkStore.save, k + 1)
    progress = die_after(k) if point == "video" else None  # progress advances once a video is in the manifest
    generate_module.generate_videos(load_config(GenerateConfig, config), progress=progress)


def export(config: Path, point: str, where: str) -> None:
    from cosmos_synth.export import export_episodes
    from cosmos_synth.export.lerobot import LeRobotWriter
    from cosmos_synth.export.robomimic import RobomimicWriter

    assert point in ("episode", "commit"), point
    progress = None
    if point == "episode":
        progress = die_after(int(where))  # progress advances once an episode is in every writer
    else:
        writer = {"robomimic": RobomimicWriter, "lerobot": LeRobotWriter}[where]
        writer.commit = die_on_call(writer.commit, 1)
    export_episodes(load_config(ExportConfig, config), progress=progress)


def train(config: Path, point: str, epoch: int) -> None:
    import cosmos_synth.train as train_module

    save_checkpoint = train_module.save_checkpoint

    def save_then_die(accelerator, out_dir, checkpoint_epoch, step):
        path = save_checkpoint(accelerator, out_dir, checkpoint_epoch, step)
        if checkpoint_epoch == epoch:
            die()
        return path

    assert point == "checkpoint", point
    train_module.save_checkpoint = save_then_die  # train() looks it up in the module at each call
    train_module.main([str(config)])


if __name__ == "__main__":
    stage, config, at = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    point, _, value = at.partition(":")
    if stage == "generate":
        generate(config, point, int(value))
    elif stage == "export":
        export(config, point, value)
    else:
        train(config, point, int(value))
    sys.exit(NEVER_REACHED)
