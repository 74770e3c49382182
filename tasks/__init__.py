"""Prefect tasks: thin wrappers around the cosmos_synth stage functions."""

from tasks.stages import (
    cache_task, export_task, fan_out_task, generate_task, ingest_task, label_task, prepare_model_task,
    prepare_source_task, preprocess_task, train_idm_task, train_task,
)

__all__ = ["cache_task", "export_task", "fan_out_task", "generate_task", "ingest_task", "label_task",
           "prepare_model_task", "prepare_source_task", "preprocess_task", "train_idm_task", "train_task"]
