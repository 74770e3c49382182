"""Export stage: a manifest's episodes as a robomimic HDF5 file, a LeRobot v3.0 dataset and, for labelled
episodes, a GR00T-flavour dataset (LeRobot v2.1 + meta/modality.json).

The manifest is the label stage's (generated episodes with IDM actions and states), the generate stage's (generated
videos, unlabelled) or the ingest stage's (real episodes with their recorded trajectories: the real demonstrations,
in the same formats as the generated ones).
Episodes stream through every writer one video at a time (memory stays flat in the number of episodes). Each
format is built under a temporary name, read back, and only then renamed over the previous export.
No labels are invented here: `Episode.actions` / `Episode.states` are written when the label stage (or a recorded
trajectory) provides them. robomimic gets the actions min-max normalised to [-1, 1] with the range stored beside
them and the states as the low-dim observation obs/state; LeRobot and GR00T get both in their original units
(`action`, `observation.state`), named by the row's `action_names` / `state_names`.
State is required by default (ExportConfig.state="required"): labelled episodes without states fail before anything
is written; exporting without state is a choice (state="none").
GR00T trains on (video, state, action): an unlabelled manifest skips that format (ExportResult.groot_skipped says
why) rather than inventing actions.
"""

from __future__ import annotations

import logging
import shutil
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cosmos_synth.config import ExportConfig, write_config
from cosmos_synth.export.episodes import Episode, iter_episodes, load_episode
from cosmos_synth.export.groot import GrootWriter, write_groot_dataset
from cosmos_synth.export.lerobot import LeRobotWriter, write_lerobot_dataset
from cosmos_synth.export.robomimic import RobomimicWriter, write_robomimic_hdf5
from cosmos_synth.manifests import read_manifest_rows
from cosmos_synth.progress import Progress, ProgressReporter
from cosmos_synth.results import StageResult

__all__ = [
    "Episode",
    "ExportResult",
    "export_episodes",
    "export_paths",
    "iter_episodes",
    "write_groot_dataset",
    "write_lerobot_dataset",
    "write_robomimic_hdf5",
]

logger = logging.getLogger(__name__)

ROBOMIMIC_DIR = "robomimic"  # <out_dir>/robomimic/<name>.hdf5, <name> = the repo id's name part
LEROBOT_DIR = "lerobot"  # <out_dir>/lerobot/ is the LeRobot dataset root
GROOT_DIR = "groot"  # <out_dir>/groot/ is the GR00T-flavour dataset root (labelled episodes only)
GROOT_UNLABELLED = (
    "the manifest's episodes have no actions; GR00T trains on (video, state, action), so run the "
    "label stage and export its manifest (or export real episodes with trajectories)"
)


@dataclass(frozen=True, kw_only=True)
class ExportResult(StageResult):  # no manifest: the outputs are the three datasets
    hdf5_path: Path  # robomimic file
    lerobot_dir: Path  # LeRobot dataset root
    num_episodes: int
    num_frames: int  # frames over all episodes (robomimic `total`, LeRobot `total_frames`)
    groot_dir: Path | None = None  # GR00T-flavour dataset root; None when skipped
    groot_skipped: str | None = None  # why the GR00T export was skipped (unlabelled episodes), else None

    def summary_rows(self) -> list[dict[str, Any]]:
        """One row per format written, for a table artifact."""
        formats = [("robomimic", self.hdf5_path), ("lerobot", self.lerobot_dir), ("groot", self.groot_dir)]
        return [
            {"format": name, "path": str(path), "episodes": self.num_episodes, "frames": self.num_frames}
            for name, path in formats
            if path is not None
        ]

    def outputs(self) -> dict[str, Path]:
        return {
            "hdf5": self.hdf5_path,
            "lerobot": self.lerobot_dir,
            **({"groot": self.groot_dir} if self.groot_dir is not None else {}),
        }


def export_paths(cfg: ExportConfig) -> tuple[Path, Path]:
    """(robomimic HDF5 file, LeRobot root) of an export."""
    name = cfg.repo_id.split("/")[-1]
    return cfg.out_dir / ROBOMIMIC_DIR / f"{name}.hdf5", cfg.out_dir / LEROBOT_DIR


def check_states(cfg: ExportConfig, rows: list[dict[str, Any]]) -> None:
    """With state="required", a label row must carry states (its IDM has a state head): fail before any work."""
    if cfg.state != "required":
        logger.warning("export.state='none': the episodes are exported without observation.state.")
        return
    stateless = [row["sample_id"] for row in rows if row.get("actions") and not row.get("state_names")]
    if stateless:
        raise ValueError(
            f"Manifest {cfg.manifest}: {len(stateless)} labelled episode(s) ({', '.join(stateless[:3])}"
            f"{', ...' if len(stateless) > 3 else ''}) have actions but no states: the IDM that labelled them has "
            "no state head. Policy trainers read observation.state, so the export requires it: retrain the IDM "
            "on episodes whose trajectories hold `state` (cosmos-synth train-idm), label again, and export; or "
            "set export.state='none' to export without state."
        )


def export_episodes(cfg: ExportConfig, progress: Progress | None = None) -> ExportResult:
    """Write every episode of `cfg.manifest` in each format; verify all before replacing the previous export.
    `progress` gets the episodes written."""
    rows = read_manifest_rows(cfg.manifest)  # fails on a missing video before anything is written
    check_states(cfg, rows)
    report = ProgressReporter(progress, "export", total=len(rows), unit="episode").start()
    retimed = sorted({row["fps"] for row in rows if row.get("fps") not in (None, cfg.fps)})
    if retimed:
        logger.warning(
            "manifest videos have fps %s; the export writes them at fps=%d (ExportConfig.fps).", retimed, cfg.fps
        )
    hdf5_path, lerobot_dir = export_paths(cfg)
    groot_dir = cfg.out_dir / GROOT_DIR
    labelled = all(row.get("actions") or row.get("trajectory") for row in rows)  # by the IDM, or recorded
    groot_skipped = None if labelled else GROOT_UNLABELLED
    if groot_skipped:
        logger.warning("groot export skipped: %s.", groot_skipped)
    num_frames = 0
    with ExitStack() as stack:
        writers = [
            stack.enter_context(
                RobomimicWriter(
                    hdf5_path, camera=cfg.camera, env_name=cfg.repo_id.split("/")[-1], action_normalization="min_max"
                )
            ),
            stack.enter_context(
                LeRobotWriter(
                    lerobot_dir,
                    repo_id=cfg.repo_id,
                    fps=cfg.fps,
                    camera=cfg.camera,
                    robot_type=cfg.robot_type,
                    codec=cfg.lerobot_codec,
                )
            ),
        ]
        if not groot_skipped:
            writers.append(
                stack.enter_context(
                    GrootWriter(
                        groot_dir,
                        fps=cfg.fps,
                        camera=cfg.camera,
                        robot_type=cfg.robot_type,
                        state_groups=cfg.groot_state_groups,
                        action_groups=cfg.groot_action_groups,
                    )
                )
            )
        for i, row in enumerate(rows):
            episode = load_episode(  # one decoded video in memory at a time
                row, with_state=cfg.state == "required", action_names=cfg.action_names, state_names=cfg.state_names
            )
            for writer in writers:
                writer.add(episode)
            num_frames += episode.num_frames
            logger.info("episode %d/%d -> %s (%d frames)", i + 1, len(rows), episode.sample_id, episode.num_frames)
            report.advance()
        for writer in writers:  # every format read back before any replaces the previous export
            writer.finish()
        for writer in writers:
            writer.commit()
    if groot_skipped and groot_dir.exists():  # an earlier labelled export's GR00T folder no longer matches
        shutil.rmtree(groot_dir)
        logger.warning("removed the previous GR00T export %s: it held other episodes.", groot_dir)
    write_config(cfg, cfg.out_dir, "export")
    logger.info(
        "exported %d episodes (%d frames): %s, %s%s",
        len(rows),
        num_frames,
        hdf5_path,
        lerobot_dir,
        "" if groot_skipped else f", {groot_dir}",
    )
    return ExportResult(
        out_dir=cfg.out_dir,
        hdf5_path=hdf5_path,
        lerobot_dir=lerobot_dir,
        num_episodes=len(rows),
        num_frames=num_frames,
        groot_dir=None if groot_skipped else groot_dir,
        groot_skipped=groot_skipped,
    )
