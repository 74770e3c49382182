"""The order of stages is written once (cosmos_synth.stages.STAGES): the CLI's `run` and the flow both walk it."""

from __future__ import annotations

from pathlib import Path

import pytest

from cosmos_synth.recipe import load_run_config
from cosmos_synth.stages import STAGES, stages_of
from tasks.stages import STAGE_TASKS

RECIPE_KEYS = {"idm": "idm_train"}  # stage name -> its key in RunConfig.stage_configs(), where the two differ


def test_every_stage_has_its_task():
    assert [stage.name for stage in STAGES] == list(STAGE_TASKS)


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({}, ["ingest", "preprocess", "cache", "train", "generate", "idm", "label", "export", "evaluate"]),
        ({"latent_cache": False, "label": False}, ["ingest", "preprocess", "train", "generate", "export", "evaluate"]),
        (
            {"idm": "runs/other/idm"},
            ["ingest", "preprocess", "cache", "train", "generate", "label", "export", "evaluate"],
        ),
        (
            {"source": "local", "dataset_dir": "data"},
            ["ingest", "preprocess", "cache", "train", "generate", "idm", "label", "export"],
        ),  # no held-out episodes: no evaluation
    ],
)
def test_a_run_goes_through_the_stages_its_settings_ask_for(overrides, names):
    assert [stage.name for stage in stages_of(load_run_config("demo", overrides))] == names


def test_each_stage_gets_the_config_the_recipe_checked():
    cfg = load_run_config("demo")
    checked = cfg.stage_configs()
    for stage in STAGES:
        assert stage.config(cfg) == checked[RECIPE_KEYS.get(stage.name, stage.name)], stage.name
    assert checked["generate"].adapter == Path(checked["evaluate"].models["lora"]) == cfg.stage_dir("train")
