"""`cosmos-synth`: run each stage, or a whole run, in-process (no Prefect server needed).

Every command reads a recipe (`datasets/<name>/recipe.toml` or a .toml path) plus `--param key=value` overrides
and builds the same config objects the Prefect flow uses. Stages read the previous stage's outputs from the run
folder (`run_dir`), so they can be run one at a time. Long stages draw a progress bar on a terminal (none when
stderr is a file or a pipe, as in CI).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from cosmos_synth.progress import ProgressUpdate
from cosmos_synth.recipe import RunConfig, load_run_config, parse_override

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)

Recipe = Annotated[str, typer.Option("--recipe", "-r", help="Recipe name (demo, gr1) or path to a .toml file.")]
Params = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        "-p",
        help="Override a setting: key=value, dotted for stages (train.rank=16, generate.num_steps=4, "
        "run_dir=runs/x). Repeatable. Values are parsed as JSON when they are JSON.",
    ),
]


def _config(recipe: str, params: list[str] | None) -> RunConfig:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return load_run_config(recipe, dict(parse_override(p) for p in params or []))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def _show(result) -> None:
    typer.echo(json.dumps({k: str(v) for k, v in vars(result).items()}, indent=2))


class TqdmProgress:
    """A stage's progress updates as a tqdm bar on stderr (rate and time left by tqdm, the latest loss and lr as
    its postfix). disable=None: no bar at all when stderr is not a terminal."""

    def __init__(self) -> None:
        self.bars: dict[str, tqdm] = {}

    def __call__(self, update: ProgressUpdate) -> None:
        bar = self.bars.get(update.stage)
        if bar is None:
            bar = self.bars[update.stage] = tqdm(
                total=update.total,
                initial=update.done,
                desc=update.stage,
                unit=update.unit,
                disable=None,
                dynamic_ncols=True,
            )
        if update.metrics:
            bar.set_postfix({k: f"{v:.3g}" for k, v in update.metrics.items()}, refresh=False)
        bar.update(update.done - bar.n)
        if update.done >= update.total:
            self.bars.pop(update.stage).close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()


@contextlib.contextmanager
def _progress() -> Iterator[TqdmProgress]:
    """Progress bars for the stages run inside; log lines are written above the bars instead of through them."""
    bars = TqdmProgress()
    with logging_redirect_tqdm():
        try:
            yield bars
        finally:
            bars.close()


@app.command("demo-data")
def demo_data(recipe: Recipe = "demo", param: Params = None) -> None:
    """Write the procedural pick-and-place dataset (videos, prompts, state/action, test pairs)."""
    from cosmos_synth.prepare import prepare_source

    typer.echo(prepare_source(_config(recipe, param)))


@app.command("build-tiny-model")
def build_tiny(out_dir: Annotated[Path, typer.Argument(help="Folder to write the model to.")]) -> None:
    """Build the tiny offline Cosmos-architecture model (random weights) into OUT_DIR."""
    from cosmos_synth.models import build_tiny_model

    typer.echo(build_tiny_model(out_dir))


@app.command()
def ingest(recipe: Recipe = "demo", param: Params = None) -> None:
    """Validate the dataset (videos decode and are long enough, captions non-empty) and write its manifest."""
    from cosmos_synth.ingest import ingest_dataset
    from cosmos_synth.prepare import prepare_source

    cfg = _config(recipe, param)
    prepare_source(cfg)
    _show(ingest_dataset(cfg.ingest_config()))


@app.command()
def preprocess(recipe: Recipe = "demo", param: Params = None) -> None:
    """Resize ingested videos to the training resolution."""
    from cosmos_synth.preprocess import preprocess_dataset

    _show(preprocess_dataset(_config(recipe, param).preprocess_config()))


@app.command()
def cache(recipe: Recipe = "demo", param: Params = None) -> None:
    """Encode prompts and video windows once, so training holds only the DiT (recipes with latent_cache=true)."""
    from cosmos_synth.cache import encode_latent_cache
    from cosmos_synth.prepare import prepare_model

    cfg = _config(recipe, param)
    prepare_model(cfg)
    with _progress() as progress:
        _show(encode_latent_cache(cfg.cache_config(), progress=progress))


@app.command()
def train(recipe: Recipe = "demo", param: Params = None) -> None:
    """Fine-tune a LoRA/DoRA adapter under `accelerate launch` (resumes from the latest checkpoint)."""
    from cosmos_synth.launch import launch_training
    from cosmos_synth.prepare import prepare_model

    cfg = _config(recipe, param)
    prepare_model(cfg)
    with _progress() as progress:
        _show(launch_training(cfg.train_config(), progress=progress))


@app.command()
def generate(
    recipe: Recipe = "demo",
    param: Params = None,
    adapter: Annotated[
        Path | None, typer.Option(help="Adapter folder; default: the run's train/ folder if it holds one.")
    ] = None,
) -> None:
    """Generate one video per (image, prompt) pair with NumPy-drawn, device-independent noise."""
    from cosmos_synth.generate import generate_videos
    from cosmos_synth.models import trained_weights_file
    from cosmos_synth.prepare import prepare_model

    cfg = _config(recipe, param)
    prepare_model(cfg)
    trained = cfg.trained_dir
    if adapter is None:
        with contextlib.suppress(ValueError):  # the run's train/ holds no trained weights: the base model
            trained_weights_file(trained)
            adapter = trained
    with _progress() as progress:
        _show(generate_videos(cfg.generate_config(adapter), progress=progress))


@app.command("train-idm")
def train_idm_command(recipe: Recipe = "demo", param: Params = None) -> None:
    """Train the inverse dynamics model on the ingested episodes that carry actions (and states); print its held-out
    error per dimension against the mean-label baseline."""
    from cosmos_synth.idm import METRICS_FILE, metrics_table, train_idm

    cfg = _config(recipe, param)
    with _progress() as progress:
        result = train_idm(cfg.idm_train_config(), progress=progress)
    typer.echo(metrics_table(result.metrics))
    typer.echo(f"metrics: {result.out_dir / METRICS_FILE}")


@app.command()
def label(recipe: Recipe = "demo", param: Params = None) -> None:
    """Label generated videos with per-frame actions predicted by the IDM (the recipe's idm, or the trained one)."""
    from cosmos_synth.label import label_videos

    cfg = _config(recipe, param)
    with _progress() as progress:
        _show(label_videos(cfg.label_config(), progress=progress))


@app.command()
def export(
    recipe: Recipe = "demo",
    param: Params = None,
    episodes: Annotated[
        str,
        typer.Option(
            help="generated: the labelled (or plain) generated videos, into <run_dir>/export/; real: the ingested "
            "real episodes with their recorded state and action, into <run_dir>/export_real/."
        ),
    ] = "generated",
) -> None:
    """Export episodes: robomimic HDF5, LeRobot v3.0 and, when labelled, the GR00T flavour."""
    from cosmos_synth.export import export_episodes

    if episodes not in ("generated", "real"):
        raise typer.BadParameter(f"--episodes {episodes!r}: use 'generated' or 'real'.", param_hint="--episodes")
    cfg = _config(recipe, param)
    with _progress() as progress:
        _show(export_episodes(cfg.export_config(episodes), progress=progress))


@app.command()
def evaluate(
    recipe: Recipe = "demo",
    param: Params = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="Evaluate these models instead: name=<training out_dir>, or name= for the "
            "base model. Repeatable, e.g. -m base= -m lora=runs/a/train -m "
            "dora=runs/b/train.",
        ),
    ] = None,
) -> None:
    """Generate from the held-out episodes' first frames with each model and compare with the real episodes."""
    from cosmos_synth.evaluate import evaluate_models, metrics_table
    from cosmos_synth.prepare import prepare_model, prepare_source

    cfg = _config(recipe, param)
    if cfg.resolved_heldout_dir is None:
        raise typer.BadParameter("this recipe has no held-out episodes; set heldout_dir=<folder in the GR1 layout>.")
    prepare_model(cfg)
    prepare_source(cfg)  # the demo world's held-out episodes (an existing dataset is reused as it is)
    eval_cfg = cfg.evaluate_config(cfg.trained_dir)
    if model:
        models = dict(m.partition("=")[::2] for m in model)
        eval_cfg = dataclasses.replace(
            eval_cfg,
            models={k: v or None for k, v in models.items()},
            generated={
                k: v for k, v in eval_cfg.generated.items() if k in models and models[k] == eval_cfg.models.get(k)
            },
        )
    result = evaluate_models(eval_cfg)
    typer.echo(metrics_table(list(result.rows)))
    typer.echo(f"report: {result.report}")


@app.command("closed-loop")
def closed_loop(
    recipe: Recipe = "closed_loop",
    param: Params = None,
    from_generated: Annotated[
        bool,
        typer.Option(
            help="Skip the world-model half: the run folder already holds generate/ and generate-base/ (for "
            "example generated on a GPU machine by benchmarks/closed_loop_generate.sh, same run_dir)."
        ),
    ] = False,
) -> None:
    """The closed-loop experiment (demo world): policies trained on real, real + synthetic and oracle data, each
    rolled out in the simulator; writes <run_dir>/closed_loop/results.json and prints the table."""
    from cosmos_synth.experiment import generate_new_scenes, results_markdown, run_closed_loop

    cfg = _config(recipe, param)
    with _progress() as progress:
        if not from_generated:
            generate_new_scenes(cfg, progress=progress)
        path = run_closed_loop(cfg)
    typer.echo(results_markdown(json.loads(path.read_text(encoding="utf-8"))))
    typer.echo(f"results: {path}")


@app.command()
def run(recipe: Recipe = "demo", param: Params = None) -> None:
    """A whole run: source, ingest, preprocess, (cache), finetune, generate, (IDM, label), export, (evaluate)."""
    from cosmos_synth.stages import output_paths, run_stages

    cfg = _config(recipe, param)
    with _progress() as progress:
        results = run_stages(cfg, progress=progress)
    typer.echo(json.dumps({name: str(path) for name, path in output_paths(cfg, results).items()}, indent=2))


@app.command()
def preview(run_dir: Annotated[Path, typer.Argument(help="A run folder, e.g. runs/demo.")]) -> None:
    """Draw a run's pictures again (loss curve, contact sheet and animated preview of the generated videos) and
    print where they are."""
    from cosmos_synth.preview import write_run_previews

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        written = write_run_previews(run_dir)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="RUN_DIR") from exc
    for name, path in written.items():
        typer.echo(f"{name}: {path}")
    typer.echo(f"TensorBoard: tensorboard --logdir {run_dir}")


if __name__ == "__main__":
    app()
