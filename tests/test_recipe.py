"""Recipes and overrides are checked when they are loaded, before any work starts: in the library, in the CLI and in
the finetune-and-generate flow. Each stage's table gets a misspelt key and a value of the wrong type."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.testing.utilities import prefect_test_harness
from typer.testing import CliRunner

from cosmos_synth.cli import app
from cosmos_synth.recipe import RECIPES_DIR, STAGE_TABLES, load_run_config
from flows.finetune_and_generate import finetune_and_generate

DEMO = re.escape(f"recipe {RECIPES_DIR / 'demo' / 'recipe.toml'}: ")

BAD_OVERRIDES = [  # (override, what the error says after the recipe's path)
    ({"demo.num_episode": 4}, r"unknown key demo\.num_episode \(did you mean demo\.num_episodes\?\)"),
    ({"demo.num_episodes": "many"}, r"demo: num_episodes='many' is not a whole number; .* e\.g\. num_episodes=8\."),
    ({"cache.num_window": 2}, r"unknown key cache\.num_window \(did you mean cache\.num_windows\?\)"),
    ({"cache.num_windows": "two"}, r"cache: num_windows='two' is not a whole number"),
    ({"train.rnak": 16}, r"unknown key train\.rnak \(did you mean train\.rank\?\)"),
    ({"train.rank": "abc"}, r"train: rank='abc' is not a whole number; give a whole number, e\.g\. rank=32\."),
    ({"generate.num_step": 4}, r"unknown key generate\.num_step \(did you mean generate\.num_steps\?\)"),
    (
        {"generate.guidance_scale": "high"},
        r"generate: guidance_scale='high' is not a number; .* e\.g\. "
        r"guidance_scale=7\.0\.",
    ),
    ({"idm_train.batchsize": 8}, r"unknown key idm_train\.batchsize \(did you mean idm_train\.batch_size\?\)"),
    ({"idm_train.learning_rate": "fast"}, r"idm_train: learning_rate='fast' is not a number"),
    ({"export.repoid": "me/x"}, r"unknown key export\.repoid \(did you mean export\.repo_id\?\)"),
    ({"export.lerobot_codec": "vp9"}, r"export: lerobot_codec='vp9' is not one of \['h264', 'av1'\]; pick one"),
    ({"export.state": "optional"}, r"export: state='optional' is not one of \['required', 'none'\]; pick one"),
    ({"evaluate.max_episode": 4}, r"unknown key evaluate\.max_episode \(did you mean evaluate\.max_episodes\?\)"),
    ({"evaluate.judge": "vlm"}, r"evaluate: judge='vlm' is not one of \['auto', 'demo', 'none'\]; pick one"),
    ({"closed_loop.policy_seeds": [1, 1]}, r"closed_loop: policy_seeds=\(1, 1\): give one or more distinct seeds"),
    ({"hieght": 64}, r"unknown key hieght \(did you mean height\?\)"),
    ({"num_frames": "lots"}, r"num_frames='lots' is not a whole number; give a whole number, e\.g\. num_frames=93\."),
]
CASE_IDS = [next(iter(override)) + ("=" + repr(next(iter(override.values())))) for override, _ in BAD_OVERRIDES]


def test_every_stage_table_is_covered():
    assert {key.split(".")[0] for override, _ in BAD_OVERRIDES for key in override} == {
        *STAGE_TABLES,
        "hieght",
        "num_frames",
    }


# ---------------------------------------------------------------------------------------------------- the library
@pytest.mark.parametrize("override, message", BAD_OVERRIDES, ids=CASE_IDS)
def test_bad_overrides_fail_at_load_naming_the_recipe(override, message):
    with pytest.raises(ValueError, match=DEMO + message):
        load_run_config("demo", override)


@pytest.mark.parametrize(
    "override, message",
    [
        ({"trian.rank": 16}, r"unknown key trian\.rank \(did you mean train\.rank\?\)"),  # an unknown table
        ({"num_epochs": 2}, r"unknown key num_epochs \(did you mean train\.num_epochs\?\)"),  # a stage key at the top
        ({"train.height": 64}, r"unknown key train\.height \(height is a top-level key: write height=<value>\)"),
        (
            {"train.zzz": 1},
            r"unknown key train\.zzz \(\[train\] takes model, revision, .*, fp8_matmuls, report_to\)",
        ),  # none close
        ({"zzz": 1}, r"unknown key zzz \(top-level keys are run_dir, source, .*, export, evaluate, closed_loop\)"),
        ({"train": 5}, r"train=5 is not a table; give one, e\.g\. train=\{\.\.\.\}\."),
        ({"train.rank": 0}, r"train: rank=0, alpha=16 must be >= 1\."),  # a stage's own check, named by its table
        ({"export.repo_id": "flat"}, r"export: repo_id='flat': use '<owner>/<name>'\."),
        ({"height": 60}, r"height=60, width=96: both must be positive multiples of 16"),
    ],
)
def test_unknown_tables_misplaced_keys_and_stage_checks(override, message):
    with pytest.raises(ValueError, match=DEMO + message):
        load_run_config("demo", override)


def test_every_unknown_key_is_listed_at_once():
    with pytest.raises(
        ValueError,
        match=r"unknown key demo\.num_episode \(did you mean demo\.num_episodes\?\); "
        r"unknown key export\.repoid \(did you mean export\.repo_id\?\)\.$",
    ):
        load_run_config("demo", {"demo.num_episode": 4, "export.repoid": "me/x"})


def test_a_recipe_file_with_a_typo_is_named(tmp_path):
    recipe = tmp_path / "mine.toml"
    recipe.write_text('model = "tiny"\n\n[export]\nrobot_typ = "arm"\n')
    with pytest.raises(
        ValueError, match=re.escape(f"recipe {recipe}: unknown key export.robot_typ (did you mean export.robot_type?)")
    ):
        load_run_config(recipe)


def test_loading_builds_every_stage_config_without_side_effects(tmp_path):
    cfg = load_run_config(
        "demo",
        {
            "run_dir": str(tmp_path / "run"),
            "cache_dir": str(tmp_path / "cache"),
            "generate_shards": "2",
            "export.robot_type": "arm",
        },
    )
    assert list(tmp_path.iterdir()) == []  # nothing written: no run folder, no tiny model built
    stages = cfg.stage_configs()
    assert set(stages) == {
        "demo",
        "ingest",
        "preprocess",
        "cache",
        "train",
        "generate",
        "idm_train",
        "label",
        "export",
        "evaluate",
        "closed_loop",
    }
    assert (cfg.generate_shards, stages["export"].robot_type) == (2, "arm")  # text coerced to the field's type
    assert stages["generate"].adapter == tmp_path / "run" / "train"  # the placeholder adapter: the run's train folder
    assert isinstance(cfg.run_dir, Path) and list(tmp_path.iterdir()) == []


def test_the_demo_exports_generated_and_real_episodes_with_state(tmp_path):
    """export_config(): the labelled generated episodes into export/, the ingested real ones into export_real/; both
    require state, name their columns after [idm_train] and split the state into the GR00T groups of [export]."""
    cfg = load_run_config("demo", {"run_dir": str(tmp_path)})
    generated, real = cfg.export_config(), cfg.export_config("real")
    assert (generated.manifest, generated.out_dir) == (tmp_path / "label/manifest.jsonl", tmp_path / "export")
    assert (real.manifest, real.out_dir) == (tmp_path / "ingest/manifest.jsonl", tmp_path / "export_real")
    for export in (generated, real):
        assert export.state == "required" and export.groot_state_groups == {"gripper": 3, "object": 2}
        assert export.action_names == ("delta_x", "delta_y", "gripper_command")
        assert export.state_names == ("gripper_x", "gripper_y", "gripper_opening", "object_x", "object_y")
    assert cfg.idm_train_config().state_names == real.state_names
    assert load_run_config("demo", {"export.state": "none"}).export_config("real").state == "none"


# ---------------------------------------------------------------------------------------------------- the CLI
def _plain(output: str) -> str:
    """The CLI's error without the box it is drawn in, on one line."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", output).split())


@pytest.mark.parametrize("override, message", BAD_OVERRIDES, ids=CASE_IDS)
def test_cli_refuses_bad_overrides_before_writing_anything(override, message, tmp_path):
    ((key, value),) = override.items()
    params = [f"{key}={value}", f"run_dir={tmp_path / 'run'}", f"cache_dir={tmp_path / 'cache'}"]
    result = CliRunner().invoke(app, ["ingest", "--recipe", "demo", *[a for p in params for a in ("--param", p)]])
    assert result.exit_code == 2, result.output
    assert re.search(DEMO + message, _plain(result.output)), result.output
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------- the flow
@pytest.fixture(scope="module")
def prefect_server():
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.mark.parametrize("override, message", BAD_OVERRIDES, ids=CASE_IDS)
def test_flow_fails_before_its_first_task(override, message, tmp_path, prefect_server):
    overrides = {**override, "run_dir": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache")}
    state = finetune_and_generate(recipe="demo", overrides=overrides, return_state=True)
    assert state.is_failed()
    with pytest.raises(ValueError, match=DEMO + message):
        state.result()
    with get_client(sync_client=True) as client:
        flow_run_id = state.state_details.flow_run_id
        assert client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))) == []
    assert list(tmp_path.iterdir()) == []
