"""Read an export with lerobot 0.4.4's own LeRobotDataset; run by tests/test_consumers.py.

Runs under .venv-consumers/bin/python (lerobot 0.4.4 pins torch<2.11 and friends, so it is not in .venv).
    check_lerobot.py v3  ROOT REPO_ID BACKEND OUT_DIR   load the LeRobot v3.0 dataset at ROOT
    check_lerobot.py v21 ROOT REPO_ID BACKEND OUT_DIR   try to load the v2.1 (GR00T-flavour) dataset at ROOT as it
        is, record lerobot's answer, then convert a copy with lerobot's own v2.1 -> v3.0 converter and load that
BACKEND is lerobot's video_backend ("torchcodec" or "pyav"). Every item is read in order; the decoded frames (back
to uint8 HWC), actions, states and indices go to OUT_DIR/items.npz, and one JSON object with the metadata and each
item's task string is printed.
"""

from __future__ import annotations

import json
import shutil
import sys
import traceback
from pathlib import Path

import lerobot
import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset


def read_dataset(root: Path, repo_id: str, backend: str, out_dir: Path) -> dict:
    dataset = LeRobotDataset(repo_id, root=root, video_backend=backend)
    video_keys = dataset.meta.video_keys
    columns: dict[str, list] = {
        "frames": [],
        "action": [],
        "observation.state": [],
        "episode_index": [],
        "frame_index": [],
        "index": [],
        "timestamp": [],
    }
    tasks = []
    for i in range(len(dataset)):
        item = dataset[i]
        image = item[video_keys[0]].numpy()  # float32 CHW in [0, 1]
        columns["frames"].append(np.round(np.moveaxis(image, 0, -1) * 255.0).astype(np.uint8))
        for key in ("action", "observation.state"):
            if key in item:
                columns[key].append(item[key].numpy())
        for key in ("episode_index", "frame_index", "index", "timestamp"):
            columns[key].append(item[key].item())
        tasks.append(item["task"])
    np.savez(out_dir / "items.npz", **{key: np.stack(values) for key, values in columns.items() if values})
    return {
        "lerobot": lerobot.__version__,
        "num_episodes": dataset.num_episodes,
        "num_frames": dataset.num_frames,
        "len": len(dataset),
        "fps": dataset.fps,
        "video_keys": video_keys,
        "backend": dataset.video_backend,
        "codebase_version": dataset.meta.info["codebase_version"],
        "features": sorted(dataset.features),
        "tasks": tasks,
        "meta_tasks": dataset.meta.tasks.index.tolist(),
        "stats_keys": sorted(dataset.meta.stats),
        "action_names": dataset.meta.info["features"]["action"]["names"],
        "state_names": dataset.meta.info["features"]["observation.state"]["names"],
        "codec": dataset.meta.info["features"][video_keys[0]]["info"]["video.codec"],
    }


def convert_v21(root: Path, repo_id: str, out_dir: Path) -> tuple[Path, str]:
    """What lerobot 0.4.4 says about the v2.1 folder as it is, then its own converter run on a copy."""
    try:
        LeRobotDataset(repo_id, root=root)
        direct = "loaded"
    except Exception as exc:  # the point is to record whatever lerobot answers
        direct = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
    from lerobot.datasets.v30.convert_dataset_v21_to_v30 import convert_dataset

    work = out_dir / "convert"
    shutil.copytree(root, work / repo_id)
    convert_dataset(repo_id=repo_id, root=work, push_to_hub=False)
    return work / repo_id, direct


def main(mode: str, root: str, repo_id: str, backend: str, out_dir: str) -> None:
    out = Path(out_dir)
    report = {}
    if mode == "v21":
        converted, report["v21_direct_load"] = convert_v21(Path(root), repo_id, out)
        root = str(converted)
    report.update(read_dataset(Path(root), repo_id, backend, out))
    print(json.dumps(report))


if __name__ == "__main__":
    try:
        main(*sys.argv[1:])
    except Exception:
        traceback.print_exc()
        sys.exit(1)
