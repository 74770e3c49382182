"""Prefect @task wrappers around the cosmos_synth stage functions: call, attach an artifact, return paths."""

from tasks.stages import (
    demo_data_task, export_task, generate_task, ingest_task, preprocess_task, prepare_model_task, train_task,
)

__all__ = ["demo_data_task", "export_task", "generate_task", "ingest_task", "preprocess_task", "prepare_model_task",
           "train_task"]
