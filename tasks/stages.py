"""One thin @task per stage: call the library function, attach a table artifact, return the Result (paths, not tensors).

No retries: every stage works on local files or the GPU, and neither fails transiently; a failed stage is fixed and
re-run (each stage skips the outputs it already verified). Artifact keys use lowercase letters, digits and dashes.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_table_artifact

from cosmos_synth.config import (
    DemoDataConfig, ExportConfig, GenerateConfig, IngestConfig, PreprocessConfig, TrainConfig,
)
from cosmos_synth.export import ExportResult, export_episodes
from cosmos_synth.generate import GenerateResult, generate_videos
from cosmos_synth.ingest import IngestResult, ingest_dataset
from cosmos_synth.launch import TrainResult, launch_training
from cosmos_synth.models import build_tiny_model
from cosmos_synth.preprocess import PreprocessResult, preprocess_dataset
from cosmos_synth.sources.procedural import write_demo_dataset

HOUR_S = 3600


@task(name="prepare-model")
def prepare_model_task(model: str, tiny: bool) -> str:
    """The model to load: `model` as it is, after building the tiny offline model there when `tiny`."""
    return str(build_tiny_model(Path(model))) if tiny else model


@task(name="demo-data")
def demo_data_task(cfg: DemoDataConfig) -> Path:
    return write_demo_dataset(cfg)


@task(name="ingest")
def ingest_task(cfg: IngestConfig) -> IngestResult:
    result = ingest_dataset(cfg)
    create_table_artifact(key="ingested-samples", table=result.summary_rows(),
                          description=f"{result.num_samples} samples -> {result.manifest}")
    return result


@task(name="preprocess")
def preprocess_task(cfg: PreprocessConfig) -> PreprocessResult:
    result = preprocess_dataset(cfg)
    create_table_artifact(key="preprocessed-clips", table=result.summary_rows(),
                          description=f"{result.num_clips} clips -> {result.manifest}")
    return result


@task(name="train", timeout_seconds=48 * HOUR_S)  # `accelerate launch` child; GPU work is not transient: no retries
def train_task(cfg: TrainConfig) -> TrainResult:
    result = launch_training(cfg)
    create_table_artifact(key="training-loss", table=result.summary_rows(),
                          description=f"{result.num_steps} steps, final loss {result.final_loss:.5f} -> "
                                      f"{result.adapter_file}")
    return result


@task(name="generate", timeout_seconds=24 * HOUR_S)
def generate_task(cfg: GenerateConfig) -> GenerateResult:
    result = generate_videos(cfg)
    create_table_artifact(key="generated-videos", table=result.summary_rows(),
                          description=f"{result.num_videos} videos ({result.num_skipped} already there) -> "
                                      f"{result.out_dir}")
    return result


@task(name="export")
def export_task(cfg: ExportConfig) -> ExportResult:
    result = export_episodes(cfg)
    create_table_artifact(key="exported-episodes", table=result.summary_rows(),
                          description=f"{result.num_episodes} episodes, {result.num_frames} frames -> "
                                      f"{result.hdf5_path}, {result.lerobot_dir}")
    return result
