"""The closed-loop experiment: do generated, IDM-labelled trajectories make a policy better? (demo world only)

On the run's task family (recipe `closed_loop`: push):
1. the world-model half is the run's own stages: a few real demonstrations (ingest), a fine-tune on them (train),
   and videos of new scenes, the first frames and prompts of the procedural source's test pairs, from the
   fine-tuned model (generate/) and from the base model (generate-base/);
2. both sets of videos are labelled with actions and states by the IDM trained on the demonstrations (label) and
   exported as robomimic HDF5 (export); the real demonstrations are exported the same way, and so are the expert's
   own rollouts of the new scenes (the oracle's extra real demonstrations);
3. a behaviour-cloning policy (cosmos_synth.policy) is trained on each training set, once per seed, reading the
   exports back, and rolled out in the simulator on scenes none of the above used (cosmos_synth.closed_loop).

Training sets (POLICIES): real; real + synthetic (fine-tuned model); real + synthetic (base model); synthetic
(fine-tuned model) alone; the oracle, real + as many more real demonstrations as there are synthetic ones.

Outputs under <run_dir>/closed_loop/:
    exports/<name>/        robomimic/…hdf5 (and the LeRobot / GR00T exports of generated sets)
    label-<model>/         the IDM's labels of each model's videos
    policies/<policy>/seed_<k>/         the policy; rollouts/closed_loop.json and rollouts/videos/
    results.json           one row per policy: policy, real_episodes, synthetic_episodes, success_rate, ci95, seeds
    report.md              the same as a table, with the command's settings
Each policy and each rollout set is skipped when its outputs exist for the same settings, so a rerun resumes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cosmos_synth.closed_loop import RESULT_FILE, evaluate_policy
from cosmos_synth.config import ClosedLoopEvalConfig, LabelConfig, PolicyTrainConfig, config_to_dict
from cosmos_synth.export import Episode, export_episodes, write_robomimic_hdf5
from cosmos_synth.export.episodes import load_episode
from cosmos_synth.files import read_jsonl, write_text_atomic
from cosmos_synth.generate import generate_videos
from cosmos_synth.idm import CONFIG_FILE as IDM_CONFIG_FILE
from cosmos_synth.idm import train_idm
from cosmos_synth.label import label_videos
from cosmos_synth.layout import MANIFEST
from cosmos_synth.policy import CONFIG_FILE, train_policy
from cosmos_synth.prepare import prepare_model, prepare_source
from cosmos_synth.progress import Progress
from cosmos_synth.recipe import RunConfig
from cosmos_synth.sources.layout import EPISODES_JSONL, HELDOUT_DIR, TRAJECTORIES_DIR
from cosmos_synth.stages import stages_of
from cosmos_synth.stats import wilson_interval

logger = logging.getLogger(__name__)

EXPERIMENT_DIR = "closed_loop"
RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
BASE_GENERATE_DIR = "generate-base"  # the base model's videos of the same scenes, beside the run's generate/
FINE_TUNED, BASE = "finetuned", "base"  # the two generating models
WORLD_MODEL_STAGES = ("ingest", "preprocess", "cache", "train", "generate")


@dataclass(frozen=True)
class PolicyArm:
    """One training set: which exports it pools, and how many real and synthetic episodes they hold."""

    name: str
    datasets: tuple[Path, ...]
    real_episodes: int
    synthetic_episodes: int


def experiment_dir(run: RunConfig) -> Path:
    return run.run_dir / EXPERIMENT_DIR


def check_experiment(run: RunConfig) -> None:
    """The run must be the demo world with held-out scenes of its own task family only: they are the new scenes."""
    demo = run.demo_config()
    if run.source != "procedural":
        raise ValueError(f"closed-loop needs the demo world (source='procedural'), got source={run.source!r}.")
    if list(demo.heldout_families or [demo.task_family]) != [demo.task_family]:
        raise ValueError(
            f"closed-loop: demo.heldout_families={demo.heldout_families} must be [{demo.task_family!r}] (the new "
            "scenes the models generate and the oracle's expert demonstrates are of the task family)."
        )


# ------------------------------------------------------------------------------------- the world-model half


def generate_new_scenes(run: RunConfig, progress: Progress | None = None) -> None:
    """The run's stages up to generate (demonstrations, fine-tune, the fine-tuned model's videos of the new
    scenes), then the base model's videos of the same scenes in generate-base/. Each stage skips finished work."""
    check_experiment(run)
    prepare_model(run)
    prepare_source(run)
    for stage in stages_of(run):
        if stage.name in WORLD_MODEL_STAGES:
            stage(stage.config(run), progress)
    base = dataclasses.replace(run.generate_config(None), out_dir=run.stage_dir(BASE_GENERATE_DIR))
    generate_videos(base, progress=progress)


# ------------------------------------------------------------------------------------------------ exports


def recorded_episodes(folder: Path, family: str) -> Iterator[Episode]:
    """The procedural source's episodes of `family` in `folder` (episodes.jsonl, videos/, trajectories/), with
    their recorded states and actions, loaded as the export stage loads an ingested episode."""
    from cosmos_synth.demo_world import ACTION_NAMES, STATE_NAMES

    for row in read_jsonl(folder / EPISODES_JSONL):
        if row["task"]["family"] == family:
            ingest_like = {
                "sample_id": row["name"],
                "video": folder / "videos" / f"{row['name']}.mp4",
                "trajectory": folder / TRAJECTORIES_DIR / f"{row['name']}.npz",
                "prompt": row["prompt"],
            }
            yield load_episode(ingest_like, action_names=ACTION_NAMES, state_names=STATE_NAMES)


def export_recorded(run: RunConfig, folder: Path, name: str) -> tuple[Path, int]:
    """Export the recorded episodes of the task family in `folder` as robomimic HDF5; (path, episodes)."""
    family = run.demo_config().task_family
    path = experiment_dir(run) / "exports" / name / f"{name}.hdf5"
    count = sum(1 for row in read_jsonl(folder / EPISODES_JSONL) if row["task"]["family"] == family)
    if not path.is_file():
        write_robomimic_hdf5(
            recorded_episodes(folder, family),
            path,
            camera=run.export_config().camera,
            env_name="demo_world",
            action_normalization="min_max",
        )
    return path, count


def label_and_export(run: RunConfig, generate_dir: Path, model: str) -> tuple[Path, int]:
    """Label one model's videos with the run's IDM and export them; (robomimic path, episodes). Both stages skip
    what an earlier run already did."""
    out = experiment_dir(run)
    labelled = label_videos(
        LabelConfig(
            manifest=generate_dir / MANIFEST, idm=run.idm_dir, out_dir=out / f"label-{model}", device=run.device
        )
    )
    exported = export_episodes(
        dataclasses.replace(run.export_config(), manifest=labelled.manifest, out_dir=out / "exports" / model)
    )
    return exported.hdf5_path, exported.num_episodes


def policy_arms(run: RunConfig) -> list[PolicyArm]:
    """The five training sets, their exports written (or found) first; the IDM is trained first if the run has
    none yet."""
    if run.idm is None and not (run.idm_dir / IDM_CONFIG_FILE).is_file():
        train_idm(run.idm_train_config())
    real, num_real = export_recorded(run, run.data_dir, "real")
    extra, num_extra = export_recorded(run, run.data_dir / HELDOUT_DIR, "oracle_extra")
    tuned, num_tuned = label_and_export(run, run.stage_dir("generate"), FINE_TUNED)
    base, num_base = label_and_export(run, run.stage_dir(BASE_GENERATE_DIR), BASE)
    return [
        PolicyArm("real", (real,), num_real, 0),
        PolicyArm("oracle", (real, extra), num_real + num_extra, 0),
        PolicyArm("real+synthetic", (real, tuned), num_real, num_tuned),
        PolicyArm("real+synthetic-base", (real, base), num_real, num_base),
        PolicyArm("synthetic", (tuned,), 0, num_tuned),
    ]


# ----------------------------------------------------------------------------------------- policies, rollouts


def _current(path: Path, config: dict[str, Any]) -> bool:
    """An earlier run wrote `path` with exactly these settings."""
    if not path.is_file():
        return False
    return json.loads(path.read_text(encoding="utf-8")).get("config") == json.loads(json.dumps(config))


def run_policy(run: RunConfig, arm: PolicyArm, seed: int) -> dict[str, Any]:
    """Train (or find) one policy and roll it out (or find its rollouts); its closed_loop.json record."""
    settings = run.closed_loop_config()
    folder = experiment_dir(run) / "policies" / arm.name / f"seed_{seed}"
    policy_cfg = PolicyTrainConfig(
        datasets=arm.datasets,
        out_dir=folder,
        camera=run.export_config().camera,
        state_keys=settings.policy_state,
        chunk=settings.chunk,
        num_steps=settings.policy_steps,
        batch_size=settings.policy_batch_size,
        seed=seed,
        device=run.device,
    )
    rollout_cfg = ClosedLoopEvalConfig(
        policy=folder,
        out_dir=folder / "rollouts",
        task_family=run.demo_config().task_family,
        num_episodes=settings.num_rollouts,
        first_seed=settings.rollout_seed,
        max_steps=settings.max_steps,
        execute_steps=settings.execute_steps,
        height=run.height,
        width=run.width,
        num_videos=settings.num_videos,
        fps=run.fps,
        device=run.device,
    )
    trained = folder / "policy_train_config.json"
    if not (trained.is_file() and (folder / CONFIG_FILE).is_file()) or json.loads(trained.read_text()) != json.loads(
        json.dumps(config_to_dict(policy_cfg))
    ):
        train_policy(policy_cfg)
        (folder / "rollouts" / RESULT_FILE).unlink(missing_ok=True)  # a new policy: its old rollouts are stale
    if not _current(folder / "rollouts" / RESULT_FILE, config_to_dict(rollout_cfg)):
        evaluate_policy(rollout_cfg)
    return json.loads((folder / "rollouts" / RESULT_FILE).read_text(encoding="utf-8"))


def summarise(arm: PolicyArm, records: list[dict[str, Any]], seeds: tuple[int, ...]) -> dict[str, Any]:
    """One results row: the success rate over every rollout of every seed, its 95% Wilson interval, and each
    seed's own rate (the spread between seeds)."""
    successes = sum(r["successes"] for r in records)
    episodes = sum(r["episodes"] for r in records)
    return {
        "policy": arm.name,
        "real_episodes": arm.real_episodes,
        "synthetic_episodes": arm.synthetic_episodes,
        "success_rate": round(successes / episodes, 4),
        "ci95": wilson_interval(successes, episodes),
        "seeds": list(seeds),
        "seed_success_rates": [r["success_rate"] for r in records],
        "rollouts": episodes,
    }


BOOTSTRAP_DRAWS = 10_000


def compare_arms(outcomes: dict[str, np.ndarray], seed: int = 0) -> dict[str, Any]:
    """What the synthetic trajectories bought, from every rollout's outcome (0/1) per training set: the gain of
    real + synthetic over real, in points, and the fraction of the real-to-oracle gap it closes, each with a 95%
    bootstrap interval (rollouts resampled within each training set, BOOTSTRAP_DRAWS times)."""
    rng = np.random.default_rng(seed)

    def rates(name: str) -> np.ndarray:
        values = outcomes[name]
        return values[rng.integers(0, len(values), (BOOTSTRAP_DRAWS, len(values)))].mean(axis=1)

    real, mixed, oracle, base = (rates(n) for n in ("real", "real+synthetic", "oracle", "real+synthetic-base"))
    point = {name: float(values.mean()) for name, values in outcomes.items()}
    gap = point["oracle"] - point["real"]
    with np.errstate(divide="ignore", invalid="ignore"):
        closed = (mixed - real) / (oracle - real)

    def interval(values: np.ndarray) -> list[float]:
        finite = values[np.isfinite(values)]
        return [round(float(v), 4) for v in np.percentile(finite, [2.5, 97.5])] if len(finite) else [None, None]

    return {
        "gain_points": round(100 * (point["real+synthetic"] - point["real"]), 2),
        "gain_points_ci95": [round(100 * v, 2) for v in interval(mixed - real)],
        "gap_closed": round((point["real+synthetic"] - point["real"]) / gap, 4) if gap else None,
        "gap_closed_ci95": interval(closed),
        "base_minus_finetuned_points": round(100 * (point["real+synthetic-base"] - point["real+synthetic"]), 2),
        "base_minus_finetuned_points_ci95": [round(100 * v, 2) for v in interval(base - mixed)],
        "bootstrap_draws": BOOTSTRAP_DRAWS,
    }


def run_closed_loop(run: RunConfig, run_one: Callable[[RunConfig, PolicyArm, int], dict] = run_policy) -> Path:
    """Steps 2 and 3 of the experiment (the world-model half must have run); write results.json; return its path.

    `run_one(run, arm, seed)` trains and rolls out one policy (run_policy; the Prefect flow passes its task)."""
    check_experiment(run)
    for folder in (run.stage_dir("generate"), run.stage_dir(BASE_GENERATE_DIR)):
        if not (folder / MANIFEST).is_file():
            raise ValueError(
                f"closed-loop: {folder / MANIFEST} does not exist. Generate the new scenes first (the run's "
                "stages up to generate, and generate with generate.adapter=null into generate-base/: "
                "benchmarks/closed_loop_generate.sh does both), or run without --from-generated."
            )
    settings = run.closed_loop_config()
    rows, outcomes = [], {}
    for arm in policy_arms(run):
        records = [run_one(run, arm, seed) for seed in settings.policy_seeds]
        rows.append(summarise(arm, records, settings.policy_seeds))
        outcomes[arm.name] = np.array([float(r["success"]) for record in records for r in record["rollouts"]])
        logger.info(
            "policy %s: %.1f%% %s over %d rollouts",
            arm.name,
            100 * rows[-1]["success_rate"],
            rows[-1]["ci95"],
            rows[-1]["rollouts"],
        )
    return write_results(run, rows, compare_arms(outcomes))


def write_results(run: RunConfig, rows: list[dict[str, Any]], comparison: dict[str, Any]) -> Path:
    settings = run.closed_loop_config()
    demo = run.demo_config()
    record = {
        "task_family": demo.task_family,
        "rows": rows,
        "comparison": comparison,
        "settings": {
            "real_demonstrations": demo.num_episodes,
            "new_scenes": demo.num_test_pairs,
            "fine_tune": {
                k: run.train_config().__dict__[k]
                for k in ("adapter", "rank", "learning_rate", "num_training_steps", "batch_size")
            },
            "replay_episodes": demo.replay_episodes,
            "generate_steps": run.generate_config(None).num_steps,
            **config_to_dict(settings),
        },
    }
    path = experiment_dir(run) / RESULTS_FILE
    text = json.dumps(record, indent=2) + "\n"
    write_text_atomic(path, text)
    write_text_atomic(experiment_dir(run) / REPORT_FILE, results_markdown(record))
    if settings.results is not None:
        write_text_atomic(settings.results, text)
    return path


def results_markdown(record: dict[str, Any]) -> str:
    lines = [
        f"# Closed loop: {record['task_family']}",
        "",
        "| policy | real episodes | synthetic episodes | success (95% interval) | per seed | rollouts |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in record["rows"]:
        low, high = row["ci95"]
        seeds = ", ".join(f"{100 * r:.0f}%" for r in row["seed_success_rates"])
        lines.append(
            f"| {row['policy']} | {row['real_episodes']} | {row['synthetic_episodes']} | "
            f"{100 * row['success_rate']:.1f}% [{100 * low:.1f}%, {100 * high:.1f}%] | {seeds} | {row['rollouts']} |"
        )
    c = record["comparison"]
    closed = (
        "n/a (oracle no better than real)"
        if c["gap_closed"] is None
        else (
            f"{100 * c['gap_closed']:.0f}% [{100 * c['gap_closed_ci95'][0]:.0f}%, {100 * c['gap_closed_ci95'][1]:.0f}%]"
        )
    )
    lines += [
        "",
        f"- real + synthetic over real: {c['gain_points']:+.1f} points "
        f"[{c['gain_points_ci95'][0]:+.1f}, {c['gain_points_ci95'][1]:+.1f}]",
        f"- share of the real-to-oracle gap closed: {closed}",
        f"- synthetic from the base model against the fine-tuned one: {c['base_minus_finetuned_points']:+.1f} points "
        f"[{c['base_minus_finetuned_points_ci95'][0]:+.1f}, {c['base_minus_finetuned_points_ci95'][1]:+.1f}]",
        f"- intervals: 95%, Wilson per training set; bootstrap over rollouts ({c['bootstrap_draws']} draws) for the "
        "differences",
    ]
    return "\n".join(lines) + "\n"
