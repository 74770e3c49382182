"""A stage's progress as a Prefect progress artifact: created at the stage's first update, updated as it goes.

The artifact's description is the update's one line (`step 48/96, loss 0.512, lr 0.000494, 1.31 step/s, ETA
0:00:37`). An update is sent when the bar moved by a percentage point or a minute went by, never more often than
every MIN_INTERVAL_S, and always at the end: a few hundred updates for a five-hour, 9,200-step run, not one per step.
The progress is only for watching: an API error while sending it is logged and the stage goes on.
"""

from __future__ import annotations

import time
from uuid import UUID

import httpx
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.logging import get_run_logger

from cosmos_synth.progress import ProgressUpdate

MIN_INTERVAL_S = 2.0  # seconds between two updates at least
MAX_INTERVAL_S = 60.0  # and at most, while the stage runs (the rate and the time left move on)
MIN_STEP_PERCENT = 1.0  # otherwise an update waits until the bar moved this much


class ProgressArtifact:
    """A Progress callback (cosmos_synth.progress) for a task or flow run; `key` names the artifact in the UI."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.artifact_id: UUID | None = None
        self.sent_at, self.sent_percent = 0.0, 0.0

    def __call__(self, update: ProgressUpdate) -> None:
        now, percent = time.monotonic(), round(100 * update.fraction, 1)
        waited = now - self.sent_at
        due = waited >= MAX_INTERVAL_S or (waited >= MIN_INTERVAL_S and percent - self.sent_percent >= MIN_STEP_PERCENT)
        if self.artifact_id is not None and update.done < update.total and not due:
            return
        try:
            if self.artifact_id is None:
                self.artifact_id = create_progress_artifact(
                    progress=percent, key=self.key, description=update.describe()
                )
            else:
                update_progress_artifact(self.artifact_id, progress=percent, description=update.describe())
        except httpx.HTTPError as exc:  # the API is busy or restarting: the next update tries again
            get_run_logger().warning("progress artifact %s not updated (%s); the stage goes on", self.key, exc)
            return
        self.sent_at, self.sent_percent = now, percent
