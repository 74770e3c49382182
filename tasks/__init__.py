"""Prefect tasks: thin wrappers around the cosmos_synth stage functions."""

import logging

from tasks.stages import (
    STAGE_TASKS,
    cache_task,
    evaluate_task,
    export_task,
    fan_out_task,
    generate_task,
    ingest_task,
    label_task,
    prepare_model_task,
    prepare_source_task,
    preprocess_task,
    train_idm_task,
    train_task,
)

__all__ = [
    "STAGE_TASKS",
    "cache_task",
    "evaluate_task",
    "export_task",
    "fan_out_task",
    "generate_task",
    "ingest_task",
    "label_task",
    "prepare_model_task",
    "prepare_source_task",
    "preprocess_task",
    "train_idm_task",
    "train_task",
]

# Every flow imports this package. Python's default level (WARNING) would drop the stages' INFO lines (sample counts,
# losses, where outputs went) before Prefect's extra-loggers handler could send them to the run's logs.
logging.getLogger("cosmos_synth").setLevel(logging.INFO)
