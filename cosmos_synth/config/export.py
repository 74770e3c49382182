"""The export stage's config: robomimic HDF5, LeRobot v3.0 and the GR00T flavour."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cosmos_synth.config.checks import _require


@dataclass(frozen=True, kw_only=True)
class ExportConfig:
    """Write episodes as robomimic HDF5, a LeRobot v3.0 dataset and (labelled episodes) a GR00T dataset."""

    # the episodes: label's manifest.jsonl (generated, IDM-labelled), generate's (generated, unlabelled) or ingest's
    # (real episodes with their recorded trajectories)
    manifest: Path
    out_dir: Path  # robomimic/<name>.hdf5, lerobot/, groot/
    # "required": labelled episodes carry their states (observation.state, obs/state), and a label manifest without
    # states (an IDM without a state head) is refused; "none": export without state, even where the episodes have it
    state: Literal["required", "none"] = "required"
    # column names for episodes whose manifest rows name none (ingest's); label rows carry their IDM's names. None:
    # action_0, ... / observation.state_0, ...
    action_names: tuple[str, ...] | None = None
    state_names: tuple[str, ...] | None = None
    repo_id: str = "cosmos-synth/demo"  # LeRobot repo id written into the dataset
    camera: str = "front"  # camera name: obs/<camera>_image, observation.images.<camera>
    fps: int = 16
    robot_type: str = "unknown"
    # LeRobot video codec: H.264 (every loader reads it) or AV1 (smaller; lerobot >= 0.4). The GR00T flavour is always
    # H.264.
    lerobot_codec: Literal["h264", "av1"] = "h264"
    groot_state_groups: dict[str, int] | None = None  # modality.json state groups: names and column counts in
    groot_action_groups: dict[str, int] | None = None  # order, e.g. {"arm": 6, "gripper": 1}; None: one group

    def __post_init__(self) -> None:
        _require("/" in self.repo_id, f"repo_id={self.repo_id!r}: use '<owner>/<name>'.")
        _require(self.camera.isidentifier(), f"camera={self.camera!r}: use a plain name such as 'front'.")
        _require(
            self.state in ("required", "none"),
            f"state={self.state!r}: use 'required' (episodes carry observation.state) or 'none' (export without it).",
        )
        for name in ("action_names", "state_names"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(str(n) for n in getattr(self, name)))
        for name in ("groot_state_groups", "groot_action_groups"):
            groups = getattr(self, name)
            if groups is None:
                continue
            _require(
                bool(groups)
                and all(isinstance(k, str) and k.isidentifier() for k in groups)
                and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in groups.values()),
                f'{name}={groups!r}: give names and whole column counts >= 1, e.g. {{"arm": 6, "gripper": 1}}.',
            )
