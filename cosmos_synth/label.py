"""Label: turn generated clips into trajectories with an inverse-dynamics model (IDM), as DreamGen does.

For every row of the generate manifest the video is decoded and the IDM (cosmos_synth.idm) predicts one action per
frame and, when it has a state head, one state per frame: a clip of `clip_frames` frames slides over every start
frame, overlapping predictions of a frame's label are averaged, and the last frame repeats the action before it (it
has no next frame to infer from).

Outputs under cfg.out_dir:
    actions/<sample_id>.npz     key `action`: (T, A) float32 and, from an IDM with a state head, key `state`: (T, S)
                                float32, one row per video frame, written atomically
    manifest.jsonl              the generate manifest's rows, each with `video` made absolute and extended with
                                `actions` (absolute path of the .npz), `action_names`, `state_names` (empty when
                                the IDM labels no state), `idm_sha256` (weights + config) and `video_sha256`; the
                                export stage reads `actions` from here
    label_config.json
A rerun skips every sample whose manifest row is unchanged (same video, same IDM) and whose .npz still verifies.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cosmos_synth.config import LabelConfig, write_config
from cosmos_synth.files import file_sha256, read_jsonl, write_jsonl
from cosmos_synth.idm import InverseDynamicsModel, idm_files, load_idm, predict_labels
from cosmos_synth.layout import ACTIONS_DIR, MANIFEST
from cosmos_synth.manifests import read_actions, read_manifest_rows, read_trajectory, write_labels
from cosmos_synth.progress import Progress, ProgressReporter
from cosmos_synth.results import StageResult
from cosmos_synth.video import read_video

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class LabelResult(StageResult):  # manifest: out_dir / manifest.jsonl, the generate rows + actions, their names
    num_labelled: int  # samples labelled by this run
    num_skipped: int  # samples whose labels already existed and matched

    def summary_rows(self) -> list[dict[str, Any]]:
        """One row per sample for a table artifact: id, frames, the actions file, each action's mean."""
        rows = []
        for row in read_jsonl(self.manifest):
            actions = read_actions(Path(row["actions"]))
            means = {
                f"mean {name}": round(float(v), 4)
                for name, v in zip(row["action_names"], actions.mean(axis=0), strict=True)
            }
            rows.append(
                {"sample_id": row["sample_id"], "frames": len(actions), "actions": Path(row["actions"]).name, **means}
            )
        return rows


def labels_are_current(row: dict[str, Any], previous: dict[str, Any] | None) -> bool:
    """True when an earlier run wrote this exact row and its .npz still holds one action (and state) row per frame."""
    if previous != row or not Path(row["actions"]).is_file():
        return False
    try:
        actions, states = read_trajectory(Path(row["actions"]))
    except ValueError:
        return False
    frames = row.get("num_frames")
    state_width = None if states is None else states.shape[1]
    return (
        actions.shape[1] == len(row["action_names"])
        and state_width == (len(row["state_names"]) or None)
        and (frames is None or len(actions) == int(frames))
    )


def label_videos(cfg: LabelConfig, progress: Progress | None = None) -> LabelResult:
    """Label every video of cfg.manifest with per-frame IDM actions (and states); skip samples whose labels are
    current.

    The output manifest is rewritten after every sample, so an interrupted run loses at most the one in flight.
    `progress` gets the videos done.
    """
    rows = read_manifest_rows(cfg.manifest)  # every video present before any work
    model = load_idm(cfg.idm, device=cfg.device)
    idm_digest = file_sha256(*idm_files(cfg.idm))
    names = {"action_names": list(model.spec.action_names), "state_names": list(model.spec.state_names)}
    if not model.spec.num_states:
        logger.warning(
            "IDM %s has no state head (its training episodes had no 'state'): the labels carry actions only, "
            "and the export stage refuses them unless export.state='none'.",
            cfg.idm,
        )
    manifest = cfg.out_dir / MANIFEST
    previous = {r["sample_id"]: r for r in read_jsonl(manifest)} if manifest.is_file() else {}
    write_config(cfg, cfg.out_dir, "label")
    done: list[dict[str, Any]] = []
    num_skipped = 0
    report = ProgressReporter(progress, "label", total=len(rows), unit="video").start()
    for number, source in enumerate(rows, start=1):
        video = Path(source["video"])
        row = {
            **source,
            "video": str(video),
            "actions": str((cfg.out_dir / ACTIONS_DIR).resolve() / f"{source['sample_id']}.npz"),
            **names,
            "idm_sha256": idm_digest,
            "video_sha256": file_sha256(video),
        }
        if labels_are_current(row, previous.get(row["sample_id"])):
            num_skipped += 1
            logger.info("labels %d/%d %s are current; skipped", number, len(rows), row["sample_id"])
        else:
            label_one(model, row, cfg.batch_size)
            logger.info("labelled %d/%d %s", number, len(rows), row["sample_id"])
        done.append(row)
        write_jsonl(manifest, done)
        report.advance()
    logger.info("labelled %d videos (%d already current) -> %s", len(rows) - num_skipped, num_skipped, manifest)
    return LabelResult(
        out_dir=cfg.out_dir, manifest=manifest, num_labelled=len(rows) - num_skipped, num_skipped=num_skipped
    )


def label_one(model: InverseDynamicsModel, row: dict[str, Any], batch_size: int) -> None:
    """Decode one video, predict its (T, A) actions (and (T, S) states), write them to row['actions']."""
    frames, _ = read_video(Path(row["video"]))
    expected = row.get("num_frames")
    if expected is not None and len(frames) != int(expected):
        raise ValueError(
            f"Video {row['video']} has {len(frames)} frames; the manifest says {expected}. "
            "Regenerate the video or fix the manifest."
        )
    labels = predict_labels(model, frames, batch_size=batch_size, name=f"Video {row['video']}")
    write_labels(Path(row["actions"]), labels.actions, labels.states)
