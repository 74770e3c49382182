"""What every stage returns: its folder, its manifest, a table of what it did, and where a user finds its outputs.

Each stage's function (ingest_dataset, launch_training, generate_videos, ...) returns a subclass of StageResult, in
the stage's own module. The CLI prints it, the stage's Prefect task turns summary_rows() into a table artifact, and
a whole run's outputs are gathered from each stage's outputs() (cosmos_synth.stages.output_paths).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cosmos_synth.files import read_jsonl


@dataclass(frozen=True, kw_only=True)
class StageResult:
    out_dir: Path  # the stage's folder, with its <stage>_config.json
    # one row per sample (ingest, preprocess, cache, generate, label) or per (model, episode) (evaluate); None where the
    # outputs are not per sample
    manifest: Path | None = None

    def summary_rows(self) -> list[dict[str, Any]]:
        """A table of what the stage did, one row per sample unless the stage says otherwise: the manifest's rows."""
        return read_jsonl(self.manifest) if self.manifest is not None else []

    def outputs(self) -> dict[str, Path]:
        """What a user opens first, by name ("adapter", "videos", "hdf5", ...); none for most stages."""
        return {}
