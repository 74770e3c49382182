"""Export stage: the generate manifest's videos as a robomimic HDF5 file and a LeRobot v3.0 dataset.

Episodes stream through both writers one video at a time (memory stays flat in the number of episodes). Each
format is built under a temporary name, read back, and only then renamed over the previous export.
No actions are invented here: `Episode.actions` / `Episode.states` are written when a later labelling stage
provides them (a label manifest row's `actions` .npz). robomimic gets them min-max normalised to [-1, 1] with the
range stored beside them; LeRobot gets them in their original units, named by the row's `action_names`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cosmos_synth.config import ExportConfig, write_config
from cosmos_synth.export.episodes import Episode, iter_episodes, load_episode, read_manifest_rows
from cosmos_synth.export.lerobot import LeRobotWriter, write_lerobot_dataset
from cosmos_synth.export.robomimic import RobomimicWriter, write_robomimic_hdf5

__all__ = ["Episode", "ExportResult", "export_episodes", "export_paths", "iter_episodes",
           "write_lerobot_dataset", "write_robomimic_hdf5"]

logger = logging.getLogger(__name__)

ROBOMIMIC_DIR = "robomimic"         # <out_dir>/robomimic/<name>.hdf5, <name> = the repo id's name part
LEROBOT_DIR = "lerobot"             # <out_dir>/lerobot/ is the LeRobot dataset root


@dataclass(frozen=True, kw_only=True)
class ExportResult:
    out_dir: Path                   # the export's folder (also holds export_config.json)
    hdf5_path: Path                 # robomimic file
    lerobot_dir: Path               # LeRobot dataset root
    num_episodes: int
    num_frames: int                 # frames over all episodes (robomimic `total`, LeRobot `total_frames`)

    def summary_rows(self) -> list[dict[str, Any]]:
        """One row per format, for a table artifact."""
        return [{"format": name, "path": str(path), "episodes": self.num_episodes, "frames": self.num_frames}
                for name, path in (("robomimic", self.hdf5_path), ("lerobot", self.lerobot_dir))]


def export_paths(cfg: ExportConfig) -> tuple[Path, Path]:
    """(robomimic HDF5 file, LeRobot root) of an export."""
    name = cfg.repo_id.split("/")[-1]
    return cfg.out_dir / ROBOMIMIC_DIR / f"{name}.hdf5", cfg.out_dir / LEROBOT_DIR


def export_episodes(cfg: ExportConfig) -> ExportResult:
    """Write every episode of `cfg.manifest` in both formats; verify both before replacing the previous export."""
    rows = read_manifest_rows(cfg.manifest)   # fails on a missing video before anything is written
    retimed = sorted({row["fps"] for row in rows if row.get("fps") not in (None, cfg.fps)})
    if retimed:
        logger.warning("manifest videos have fps %s; the export writes them at fps=%d (ExportConfig.fps).",
                       retimed, cfg.fps)
    hdf5_path, lerobot_dir = export_paths(cfg)
    num_frames = 0
    with (RobomimicWriter(hdf5_path, camera=cfg.camera, env_name=cfg.repo_id.split("/")[-1],
                          action_normalization="min_max") as hdf5,
          LeRobotWriter(lerobot_dir, repo_id=cfg.repo_id, fps=cfg.fps, camera=cfg.camera,
                        robot_type=cfg.robot_type) as lerobot):
        for i, row in enumerate(rows):
            episode = load_episode(row)        # one decoded video in memory at a time
            hdf5.add(episode)
            lerobot.add(episode)
            num_frames += episode.num_frames
            logger.info("episode %d/%d -> %s (%d frames)", i + 1, len(rows), episode.sample_id, episode.num_frames)
        hdf5.finish()                          # both read back before either replaces the previous export
        lerobot.finish()
        hdf5.commit()
        lerobot.commit()
    write_config(cfg, cfg.out_dir, "export")
    return ExportResult(out_dir=cfg.out_dir, hdf5_path=hdf5_path, lerobot_dir=lerobot_dir,
                        num_episodes=len(rows), num_frames=num_frames)
