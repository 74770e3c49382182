"""The behaviour-cloning policy, the closed-loop evaluator and the closed-loop experiment at toy scale."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cosmos_synth.closed_loop import RESULT_FILE, evaluate_policy, run_rollouts
from cosmos_synth.config import ClosedLoopEvalConfig, PolicyTrainConfig
from cosmos_synth.demo_world import ACTION_NAMES, DemoWorld, rollout_expert
from cosmos_synth.demo_world.expert import expert_targets
from cosmos_synth.export import Episode, write_robomimic_hdf5
from cosmos_synth.policy import load_policy, read_demos, train_policy


def expert_export(path: Path, num_episodes: int, first_seed: int = 0) -> Path:
    """Push demonstrations of the scripted expert, exported as robomimic HDF5 (states and min-max actions)."""
    world = DemoWorld()
    episodes = []
    for i in range(num_episodes):
        e = rollout_expert(world, "push", first_seed + i)
        episodes.append(
            Episode(
                sample_id=f"episode_{i}",
                frames=e.frames,
                task=e.prompt,
                source="real",
                actions=e.action,
                states=e.state,
                action_names=ACTION_NAMES,
            )
        )
    return write_robomimic_hdf5(episodes, path, camera="front", env_name="demo_world", action_normalization="min_max")


@pytest.fixture(scope="module")
def export_4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return expert_export(tmp_path_factory.mktemp("bc") / "real.hdf5", 4)


class ScriptedExpert:
    """The recorder's expert as a policy: the same `act` interface, replaying each scene's plan step by step."""

    def __init__(self, worlds: list[DemoWorld]) -> None:
        self.plans = [expert_targets(w.task, w.scene, 16) for w in worlds]
        self.step = 0

    def act(self, images: np.ndarray, states: np.ndarray, tasks: list[str]) -> np.ndarray:
        actions = []
        for (targets, commands), state in zip(self.plans, states, strict=True):
            t = min(self.step, len(commands) - 1)
            move = targets[min(t + 1, len(targets) - 1)] - state[:2] if self.step < len(commands) else (0.0, 0.0)
            actions.append([move[0], move[1], commands[t] if self.step < len(commands) else -1.0])
        self.step += 1
        return np.asarray(actions, np.float32)[:, None]


def test_export_reads_back_with_original_units(export_4: Path) -> None:
    """The policy reads the export through its format: min-max actions come back in the recorder's units."""
    demos = read_demos((export_4,), "front")
    recorded = rollout_expert(DemoWorld(), "push", 0)
    assert len(demos) == 4
    np.testing.assert_allclose(demos[0].actions, recorded.action, atol=1e-5)
    np.testing.assert_array_equal(demos[0].states, recorded.state)
    assert demos[0].task == recorded.prompt and demos[0].frames.shape == (17, 64, 96, 3)


def test_policy_without_state_is_refused(tmp_path: Path, export_4: Path) -> None:
    copy = tmp_path / "no_state.hdf5"
    copy.write_bytes(export_4.read_bytes())
    with h5py.File(copy, "a") as f:
        del f["data/demo_0/obs/state"]
    with pytest.raises(ValueError, match=r"demo_0 has no obs/state.*export labelled episodes with states"):
        train_policy(PolicyTrainConfig(datasets=(copy,), out_dir=tmp_path / "p", num_steps=1))


def test_policy_fits_demonstrations_and_is_deterministic(tmp_path: Path, export_4: Path) -> None:
    """A few hundred steps fit four demonstrations far below the mean-action loss (1.0 in standardised units), and
    the same seed gives the same weights."""
    runs = [
        train_policy(PolicyTrainConfig(datasets=(export_4,), out_dir=tmp_path / name, num_steps=150, seed=0))
        for name in ("a", "b")
    ]
    assert runs[0].num_demos == 4 and runs[0].num_frames == 68
    assert runs[0].final_loss < 0.3
    a, b = (load_policy(tmp_path / name).state_dict() for name in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    policy = load_policy(tmp_path / "a")
    assert policy.spec.vocabulary == tuple(sorted(policy.spec.vocabulary)) and "left" in policy.spec.vocabulary
    chunk = policy.act(np.zeros((2, 64, 96, 3), np.uint8), np.full((2, 5), 0.5, np.float32), ["a", "b"])
    assert chunk.shape == (2, 4, 3) and np.isfinite(chunk).all()


def test_rollouts_count_the_environments_successes(tmp_path: Path) -> None:
    """The evaluator runs the actions it is given: the scripted expert succeeds on every held-out scene; holding
    still succeeds on none."""
    cfg = ClosedLoopEvalConfig(policy=tmp_path, out_dir=tmp_path, num_episodes=6, max_steps=16, num_videos=1)

    class Expert(ScriptedExpert):
        def __init__(self) -> None:
            worlds = []
            for k in range(cfg.num_episodes):
                world = DemoWorld()
                world.reset(cfg.task_family, cfg.first_seed + k)
                worlds.append(world)
            super().__init__(worlds)

    successes, prompts, videos = run_rollouts(Expert(), cfg)
    assert successes == [True] * 6 and all("pushes the" in p for p in prompts)
    assert len(videos) == 1 and videos[0].shape == (17, 64, 96, 3)

    class Still:
        def act(self, images, states, tasks):
            return np.tile(np.array([0.0, 0.0, -1.0], np.float32), (len(images), 1, 1))

    assert run_rollouts(Still(), cfg)[0] == [False] * 6


def test_evaluate_policy_writes_results_and_videos(tmp_path: Path, export_4: Path) -> None:
    train_policy(PolicyTrainConfig(datasets=(export_4,), out_dir=tmp_path / "policy", num_steps=20))
    cfg = ClosedLoopEvalConfig(policy=tmp_path / "policy", out_dir=tmp_path / "eval", num_episodes=5, num_videos=2)
    result = evaluate_policy(cfg)
    record = json.loads((tmp_path / "eval" / RESULT_FILE).read_text())
    assert record["episodes"] == 5 and len(record["rollouts"]) == 5
    assert record["successes"] == sum(r["success"] for r in record["rollouts"])
    assert record["success_rate"] == result.success_rate and 0 <= record["ci95"][0] <= record["ci95"][1] <= 1
    assert [r["seed"] for r in record["rollouts"]] == list(range(2_000_000, 2_000_005))
    assert [p.name for p in result.videos] == ["rollout_000.mp4", "rollout_001.mp4"]
    with pytest.raises(ValueError, match="set height=64 and width=96"):
        evaluate_policy(ClosedLoopEvalConfig(policy=tmp_path / "policy", out_dir=tmp_path / "e2", height=32, width=48))


@pytest.mark.slow
def test_closed_loop_experiment_toy_scale(tmp_path: Path) -> None:
    """`cosmos-synth closed-loop` end to end with the demo world model: demonstrations, a LoRA, both models' videos of
    the new scenes, IDM labels, exports, five training sets, a policy each, rollouts, results.json; a rerun
    resumes (trains nothing again)."""
    from cosmos_synth.cli import app

    run_dir = tmp_path / "run"
    params = [
        f"run_dir={run_dir}",
        "device=cpu",
        "train.cpu=true",
        "demo.num_episodes=3",
        "demo.replay_episodes=1",
        "demo.num_test_pairs=2",
        "train.num_epochs=1",
        "train.batch_size=2",
        "train.num_training_steps=2",
        "train.num_warmup_steps=1",
        "generate.num_steps=2",
        "idm_train.num_epochs=1",
        "closed_loop.policy_seeds=[0]",
        "closed_loop.policy_steps=3",
        "closed_loop.num_rollouts=2",
        "closed_loop.num_videos=1",
        f"closed_loop.results={tmp_path / 'closed_loop.json'}",
    ]
    args = ["closed-loop", "--recipe", "closed_loop", *[x for p in params for x in ("-p", p)]]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "closed_loop.json").read_text())
    rows = {row["policy"]: row for row in record["rows"]}
    assert list(rows) == ["real", "oracle", "real+synthetic", "real+synthetic-base", "synthetic"]
    assert (rows["real"]["real_episodes"], rows["real"]["synthetic_episodes"]) == (3, 0)
    assert (rows["oracle"]["real_episodes"], rows["oracle"]["synthetic_episodes"]) == (5, 0)
    assert (rows["real+synthetic"]["real_episodes"], rows["real+synthetic"]["synthetic_episodes"]) == (3, 2)
    assert rows["synthetic"]["real_episodes"] == 0 and all(row["rollouts"] == 2 for row in rows.values())
    assert all(set(row) >= {"success_rate", "ci95", "seeds"} for row in rows.values())
    with h5py.File(run_dir / "closed_loop" / "exports" / "finetuned" / "robomimic" / "closed-loop.hdf5") as f:
        assert f["data/demo_0/obs/state"].shape == (17, 5)  # IDM states of a generated episode
    policy = run_dir / "closed_loop" / "policies" / "real" / "seed_0" / "policy.safetensors"
    stamp = policy.stat().st_mtime_ns
    again = CliRunner().invoke(app, [*args, "--from-generated"])
    assert again.exit_code == 0, again.output
    assert policy.stat().st_mtime_ns == stamp
    assert json.loads((tmp_path / "closed_loop.json").read_text())["rows"] == record["rows"]

    # The same experiment as the closed-loop flow: one task per policy, all found done; the results as an artifact.
    from prefect.testing.utilities import prefect_test_harness

    from cosmos_synth.recipe import parse_override
    from flows.closed_loop import closed_loop

    with prefect_test_harness(server_startup_timeout=120):
        path = closed_loop(recipe="closed_loop", overrides=dict(parse_override(p) for p in params), from_generated=True)
    assert json.loads(Path(path).read_text())["rows"] == record["rows"]
    assert policy.stat().st_mtime_ns == stamp
