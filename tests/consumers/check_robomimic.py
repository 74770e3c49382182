"""Read a robomimic HDF5 export with robomimic 0.3.0's own SequenceDataset; run by tests/test_consumers.py.

Runs under .venv-consumers/bin/python (robomimic is not installed in .venv). For each filter key it builds the
dataset the way robomimic's training script does (obs specs first, then SequenceDataset with the filter key),
reads every item, puts its image obs through robomimic's own network-input processing (ObsUtils.process_obs:
uint8 HWC -> float CHW in [0, 1]) and writes what it read to <out>/<filter>.npz (obs and next_obs turned back into
uint8 HWC, the low-dim obs `state` and its next_obs when the file has obs/state, actions, rewards, dones); it prints
one JSON object: per filter key the demos, item count and shapes.
Usage: check_robomimic.py FILE OBS_KEY OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import numpy as np
import robomimic
import robomimic.utils.obs_utils as obs_utils
from robomimic.utils.dataset import SequenceDataset


def to_uint8(processed: np.ndarray) -> np.ndarray:
    """robomimic hands rgb obs to networks as float CHW in [0, 1]; undo that to compare with the source frames."""
    return np.round(np.moveaxis(np.asarray(processed), -3, -1) * 255.0).astype(np.uint8)


STATE = "state"  # the low-dim observation of labelled episodes


def read_split(path: str, obs_key: str, low_dim: list[str], split: str | None) -> tuple[dict, dict[str, np.ndarray]]:
    dataset = SequenceDataset(
        hdf5_path=path,
        obs_keys=(obs_key, *low_dim),
        dataset_keys=("actions", "rewards", "dones"),
        load_next_obs=True,
        frame_stack=1,
        seq_length=1,
        pad_frame_stack=True,
        pad_seq_length=True,
        get_pad_mask=False,
        goal_mode=None,
        hdf5_cache_mode="low_dim",
        hdf5_use_swmr=True,
        hdf5_normalize_obs=False,
        filter_by_attribute=split,
    )
    items = [dataset[i] for i in range(len(dataset))]
    processed = {
        group: np.stack([obs_utils.process_obs(item[group][obs_key][0], obs_key=obs_key) for item in items])
        for group in ("obs", "next_obs")
    }
    arrays = {
        "obs": to_uint8(processed["obs"]),
        "next_obs": to_uint8(processed["next_obs"]),
        "actions": np.stack([item["actions"][0] for item in items]),
        "rewards": np.stack([item["rewards"][0] for item in items]),
        "dones": np.stack([item["dones"][0] for item in items]),
    }
    for key in low_dim:  # low-dim obs reach the network as they are stored (processing leaves them unchanged)
        arrays[key] = np.stack([obs_utils.process_obs(item["obs"][key][0], obs_key=key) for item in items])
        arrays[f"next_{key}"] = np.stack([item["next_obs"][key][0] for item in items])
    summary = {
        "demos": list(dataset.demos),
        "num_items": len(dataset),
        "total_num_sequences": dataset.total_num_sequences,
        "obs_dtype": str(items[0]["obs"][obs_key].dtype),
        "obs_shape": list(items[0]["obs"][obs_key].shape),
        "processed_shape": list(processed["obs"].shape[1:]),
        "processed_dtype": str(processed["obs"].dtype),
        "processed_range": [float(processed["obs"].min()), float(processed["obs"].max())],
        "actions_dtype": str(arrays["actions"].dtype),
    }
    return summary, arrays


def main(path: str, obs_key: str, out_dir: str) -> None:
    with h5py.File(path, "r") as f:
        low_dim = [STATE] if STATE in f["data/demo_0/obs"] else []
    obs_utils.initialize_obs_utils_with_obs_specs({"obs": {"rgb": [obs_key], "low_dim": low_dim}})
    report = {"robomimic": robomimic.__version__, "low_dim": low_dim, "splits": {}}
    for split in ("train", "valid", None):
        summary, arrays = read_split(path, obs_key, low_dim, split)
        report["splits"][split or "all"] = summary
        np.savez(Path(out_dir) / f"{split or 'all'}.npz", **arrays)
    print(json.dumps(report))


if __name__ == "__main__":
    main(*sys.argv[1:])
