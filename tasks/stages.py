"""One thin @task per stage: call the library function, attach a table artifact, return the Result (paths, not tensors).

No retries: every stage works on local files or the GPU, and neither fails transiently; a failed stage is fixed and
re-run (each stage skips the outputs it already verified). Artifact keys use lowercase letters, digits and dashes.
Long stages also update a progress artifact (`<stage>-progress`) as they go, and the stages' own log lines reach the
run's logs: Prefect forwards the `cosmos_synth` loggers (PREFECT_LOGGING_EXTRA_LOGGERS, set in prefect.yaml and
flows/local_stack.py) at the level tasks/__init__.py sets.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from cosmos_synth.cache import CacheResult, encode_latent_cache
from cosmos_synth.config import (
    CacheConfig,
    EvaluateConfig,
    ExportConfig,
    GenerateConfig,
    IDMTrainConfig,
    IngestConfig,
    LabelConfig,
    PreprocessConfig,
    TrainConfig,
)
from cosmos_synth.evaluate import EvaluateResult, evaluate_models
from cosmos_synth.export import ExportResult, export_episodes
from cosmos_synth.files import read_jsonl
from cosmos_synth.generate import GenerateResult, generate_videos
from cosmos_synth.idm import IDMResult, train_idm
from cosmos_synth.ingest import IngestResult, ingest_dataset
from cosmos_synth.label import LabelResult, label_videos
from cosmos_synth.launch import launch_training
from cosmos_synth.prepare import prepare_model, prepare_source
from cosmos_synth.preprocess import PreprocessResult, preprocess_dataset
from cosmos_synth.recipe import RunConfig
from cosmos_synth.train import TrainResult
from tasks.fanout import fan_out_generation
from tasks.progress import ProgressArtifact

HOUR_S = 3600


@task(name="prepare-model")
def prepare_model_task(cfg: RunConfig) -> str:
    """The model to load, after building the tiny offline model when the recipe names it."""
    return prepare_model(cfg)


@task(name="prepare-source")  # Hub downloads retry inside cosmos_synth.sources.hub, only on network errors
def prepare_source_task(cfg: RunConfig) -> Path:
    """The procedural demo episodes written, or the Hub datasets downloaded, as the recipe says."""
    return prepare_source(cfg)


@task(name="cache", timeout_seconds=6 * HOUR_S)
def cache_task(cfg: CacheConfig) -> CacheResult:
    result = encode_latent_cache(cfg, progress=ProgressArtifact("cache-progress"))
    create_table_artifact(
        key="latent-cache",
        table=result.summary_rows(),
        description=f"{result.num_clips} clips ({result.num_encoded} encoded now), "
        f"{result.num_prompts} prompts -> {result.out_dir}",
    )
    return result


@task(name="ingest")
def ingest_task(cfg: IngestConfig) -> IngestResult:
    result = ingest_dataset(cfg)
    if result.num_quarantined:
        create_table_artifact(
            key="quarantined-samples",
            table=read_jsonl(result.quarantine),
            description=f"{result.num_quarantined} bad samples left out (lenient mode)",
        )
    unlisted = len(result.unlisted_videos)
    if unlisted:
        create_table_artifact(
            key="unlisted-videos",
            table=[{"video": v} for v in result.unlisted_videos],
            description=f"{unlisted} videos in the dataset's video folders are named by no "
            f"metadata.csv row and were not ingested",
        )
    create_table_artifact(
        key="ingested-samples",
        table=result.summary_rows(),
        description=f"{result.num_samples} samples -> {result.manifest}"
        + (f" ({unlisted} unlisted videos left out; see unlisted-videos)" if unlisted else ""),
    )
    return result


@task(name="preprocess")
def preprocess_task(cfg: PreprocessConfig) -> PreprocessResult:
    result = preprocess_dataset(cfg)
    create_table_artifact(
        key="preprocessed-clips",
        table=result.summary_rows(),
        description=f"{result.num_clips} clips -> {result.manifest}",
    )
    return result


@task(name="train", timeout_seconds=48 * HOUR_S)  # `accelerate launch` child; GPU work is not transient: no retries
def train_task(cfg: TrainConfig) -> TrainResult:
    result = launch_training(cfg, progress=ProgressArtifact("training-progress"))
    create_table_artifact(
        key="training-loss",
        table=result.summary_rows(),
        description=f"{result.num_steps} steps, final loss {result.final_loss:.4g} -> "
        f"{result.adapter_file}; curve: {result.loss_curve}",
    )
    return result


@task(name="generate", timeout_seconds=24 * HOUR_S)
def generate_task(cfg: GenerateConfig) -> GenerateResult:
    result = generate_videos(cfg, progress=ProgressArtifact("generation-progress"))
    if result.quarantined:
        create_table_artifact(
            key="quarantined-pairs",
            table=list(result.quarantined),
            description=f"{len(result.quarantined)} bad pairs left out (lenient mode)",
        )
    create_table_artifact(
        key="generated-videos",
        table=result.summary_rows(),
        description=f"{result.num_videos} videos ({result.num_skipped} already there) -> {result.out_dir}",
    )
    return result


@task(name="generate-fan-out", timeout_seconds=24 * HOUR_S)
def fan_out_task(cfg: GenerateConfig, num_shards: int, deployment: str) -> GenerateResult:
    """One `generate-shard` child flow run per shard on the deployment's pool; failed shards are run again."""
    result, shards = fan_out_generation(cfg, num_shards=num_shards, deployment=deployment)
    create_table_artifact(
        key="generation-shards",
        table=shards,
        description=f"{result.num_videos} videos in {len(shards)} shards -> {result.manifest}",
    )
    create_table_artifact(
        key="generated-videos",
        table=result.summary_rows(),
        description=f"{result.num_videos} videos -> {result.out_dir}",
    )
    return result


@task(name="train-idm", timeout_seconds=6 * HOUR_S)
def train_idm_task(cfg: IDMTrainConfig) -> IDMResult:
    result = train_idm(cfg, progress=ProgressArtifact("idm-training-progress"))
    create_table_artifact(
        key="idm-heldout-error",
        table=result.summary_rows(),
        description="Inverse dynamics model: MSE and R2 per action and state dimension on held-out real episodes, "
        f"against predicting the training set's mean -> {result.model_path}",
    )
    return result


@task(name="label", timeout_seconds=6 * HOUR_S)
def label_task(cfg: LabelConfig) -> LabelResult:
    result = label_videos(cfg, progress=ProgressArtifact("labelling-progress"))
    create_table_artifact(
        key="action-labels",
        table=result.summary_rows(),
        description=f"{result.num_labelled} videos labelled ({result.num_skipped} already) -> {result.manifest}",
    )
    return result


@task(name="export")
def export_task(cfg: ExportConfig) -> ExportResult:
    result = export_episodes(cfg, progress=ProgressArtifact("export-progress"))
    rows = result.summary_rows()
    create_table_artifact(
        key="exported-episodes",
        table=rows,
        description=f"{result.num_episodes} episodes, {result.num_frames} frames -> "
        + ", ".join(row["path"] for row in rows)
        + (f" (GR00T skipped: {result.groot_skipped})" if result.groot_skipped else ""),
    )
    return result


@task(name="evaluate", timeout_seconds=12 * HOUR_S)
def evaluate_task(cfg: EvaluateConfig) -> EvaluateResult:
    """Held-out episodes against each model's generated videos; the report (with the table) as a markdown artifact."""
    result = evaluate_models(cfg)
    create_table_artifact(
        key="evaluation",
        table=result.summary_rows(),
        description=f"held-out evaluation, one row per (model, task family) -> {result.metrics}",
    )
    create_markdown_artifact(
        key="evaluation-report", markdown=result.report.read_text(encoding="utf-8"), description=f"{result.report}"
    )
    return result


# The task of each stage of cosmos_synth.stages.STAGES, by stage name (the flow's generation fans out instead when
# generate_shards > 1: fan_out_task).
STAGE_TASKS = {
    "ingest": ingest_task,
    "preprocess": preprocess_task,
    "cache": cache_task,
    "train": train_task,
    "generate": generate_task,
    "idm": train_idm_task,
    "label": label_task,
    "export": export_task,
    "evaluate": evaluate_task,
}
