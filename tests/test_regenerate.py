"""The regenerate flow on a real (in-process) Prefect server: new inbox pairs become episodes once, never twice."""

from __future__ import annotations

import shutil

import h5py
import pytest
from prefect.testing.utilities import prefect_test_harness

from cosmos_synth.files import read_jsonl
from cosmos_synth.recipe import load_run_config
from cosmos_synth.regenerate import LEDGER
from cosmos_synth.stages import run_stages
from flows.regenerate import regenerate

pytestmark = pytest.mark.slow  # a whole demo run, then the regenerate flow twice


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("regen")
    overrides = {
        "run_dir": str(tmp / "run"),
        "cache_dir": str(tmp / "cache"),
        "train.num_epochs": 1,
        "demo.num_episodes": 4,
        "demo.num_test_pairs": 2,
        "generate.num_steps": 2,
    }
    cfg = load_run_config("demo", overrides)
    run_stages(cfg)
    return tmp, overrides, cfg


def _demos(cfg) -> list[str]:
    with h5py.File(next((cfg.stage_dir("export") / "robomimic").glob("*.hdf5")), "r") as f:
        return sorted(f["data"][name].attrs["sample_id"] for name in f["data"])


def test_same_inbox_twice_adds_each_pair_once(base_run):
    tmp, overrides, cfg = base_run
    inbox = tmp / "inbox"
    inbox.mkdir()
    test_pairs = cfg.data_dir / "test"
    for i, stem in enumerate(["pair_0000", "pair_0001"]):  # new prompts on known images: new pairs
        shutil.copyfile(test_pairs / f"{stem}.png", inbox / f"new_{i}.png")
        (inbox / f"new_{i}.txt").write_text(f"The robot arm pushes the cube to the left, take {i}.")
    before = _demos(cfg)
    assert len(before) == 2

    with prefect_test_harness(server_startup_timeout=120):
        first = regenerate(recipe="demo", overrides=overrides, inbox=str(inbox))
        shutil.copyfile(inbox / "new_0.png", inbox / "renamed.png")  # the same pair under another name
        (inbox / "renamed.txt").write_text((inbox / "new_0.txt").read_text())
        second = regenerate(recipe="demo", overrides=overrides, inbox=str(inbox))

    assert first["new_episodes"] == 2 and first["episodes"] == 4
    assert second == {"new_episodes": 0, "batch": None}
    after = _demos(cfg)
    assert len(after) == len(set(after)) == 4 and set(before) < set(after)
    ledger = read_jsonl(cfg.run_dir / "regenerate" / LEDGER)
    assert len(ledger) == 2 and len({r["hash"] for r in ledger}) == 2
    labelled = read_jsonl(cfg.run_dir / "regenerate" / "episodes.jsonl")
    assert {r["sample_id"] for r in labelled[-2:]} == {r["sample_id"] for r in ledger}
    assert all("actions" in r for r in labelled)  # the new episodes are labelled like the base run's
