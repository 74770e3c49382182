"""A run's settings (a recipe plus overrides, :class:`RunConfig`) and the stage configs they expand to.

A recipe is a TOML file in `datasets/<name>/recipe.toml`. Top-level keys are :class:`RunConfig` fields; the
tables `[demo]`, `[idm_train]`, `[cache]`, `[train]`, `[generate]`, `[export]`, `[evaluate]` and `[closed_loop]`
override the matching stage config's fields (:data:`STAGE_TABLES`). Overrides use dotted keys: `num_frames=29`,
`train.rank=16`, `generate.num_steps=4`.

Loading checks everything at once, before any work starts: an unknown key names the closest valid one ("did you mean
train.rank?"), a value of the wrong type names its field, and every stage's config is built once, so a mistake in
`export.*` surfaces before training, not after it.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cosmos_synth.config import (
    CacheConfig,
    ClosedLoopConfig,
    DemoDataConfig,
    EvaluateConfig,
    ExportConfig,
    GenerateConfig,
    IDMTrainConfig,
    IngestConfig,
    LabelConfig,
    PreprocessConfig,
    TrainConfig,
    config_from_dict,
)
from cosmos_synth.layout import MANIFEST
from cosmos_synth.models import DEMO_WORLD_MODEL, NVIDIA_MODEL, NVIDIA_REVISION
from cosmos_synth.sources.layout import HELDOUT_DIR

TINY = "tiny"  # model alias: the tiny offline Cosmos-architecture model (random weights), built on first use
DEMO_WORLD = "demo-world"  # model alias: the demo world model shipped in datasets/demo/world_model/
RECIPES_DIR = Path(__file__).resolve().parent.parent / "datasets"
STAGE_TABLES: dict[str, type] = {  # recipe table (and override prefix) -> the stage config whose fields it sets
    "demo": DemoDataConfig,
    "idm_train": IDMTrainConfig,
    "cache": CacheConfig,
    "train": TrainConfig,
    "generate": GenerateConfig,
    "export": ExportConfig,
    "evaluate": EvaluateConfig,
    "closed_loop": ClosedLoopConfig,
}


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Everything one run of finetune-and-generate needs; expands to one config per stage."""

    # all outputs: data/, ingest/, preprocess/, train/, generate/, export/ (export_real/: the real episodes)
    run_dir: Path = Path("runs/demo")
    source: Literal["procedural", "local", "hub"] = "procedural"  # where episodes come from
    dataset_dir: Path | None = None  # source=local: dataset root (GR1 layout)
    dataset_repo: str = "nvidia/GR1-100"  # source=hub: Hub dataset repo (or a local folder laid out alike)
    dataset_revision: str | None = "main"  # source=hub: branch, tag or commit of dataset_repo
    videos_dir: str | None = None  # folder of the videos when metadata.csv names files ("gr1")
    pairs_dir: Path | None = None  # (image, prompt) pairs to generate from; default <dataset>/test
    pairs_repo: str | None = None  # Hub repo (or local folder) holding the pairs, e.g. nvidia/EVAL-175
    pairs_revision: str | None = "main"  # revision of pairs_repo
    pairs_subdir: str = "gr1_object"  # folder of pairs inside pairs_repo
    caption_prefix: str = ""  # prepended to every training caption
    model: str = NVIDIA_MODEL  # Hub id, local folder, or "tiny"
    revision: str | None = NVIDIA_REVISION  # Hub revision (ignored for local folders and "tiny")
    cache_dir: Path = Path(".cache/cosmos-synth")  # where the tiny model is built
    dtype: Literal["float32", "bfloat16"] = "bfloat16"
    device: str = "cuda"  # generation device; training uses accelerate's device placement
    height: int = 432  # training and generation resolution, pixels
    width: int = 768
    # training window and generation's chunk length (4k+1 frames); also the generated length unless
    # generate.num_frames asks for longer videos, chained chunk by chunk (cosmos_synth.chain)
    num_frames: int = 93
    fps: int = 16
    seed: int = 0
    guardrail: bool = True  # NVIDIA's guardrail for NVIDIA weights
    # encode prompts + video windows once (cache stage) and train on them with only the DiT on the GPU
    latent_cache: bool = False
    # > 1: fan generation out as child flow runs of shard_deployment (Prefect only; the CLI generates in-process)
    generate_shards: int = 1
    shard_deployment: str = "generate-shard/gpu"  # <flow>/<deployment> that runs one shard on a worker of its pool
    # bad samples: stop at the first (strict) or skip and list them in <stage>/quarantine.jsonl (lenient)
    mode: Literal["strict", "lenient"] = "strict"
    label: bool = True  # label generated videos with actions (inverse dynamics model)
    # a trained IDM folder (idm.safetensors + idm_config.json); None: train one on the dataset's episodes that carry
    # actions
    idm: Path | None = None
    # held-out real episodes (GR1 layout) to evaluate against; None: <dataset>/heldout when the source writes one
    # (procedural)
    heldout_dir: Path | None = None
    demo: dict[str, Any] = field(default_factory=dict)  # DemoDataConfig overrides (source=procedural)
    idm_train: dict[str, Any] = field(default_factory=dict)  # IDMTrainConfig overrides (idm unset)
    cache: dict[str, Any] = field(default_factory=dict)  # CacheConfig overrides (latent_cache=true)
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig overrides
    generate: dict[str, Any] = field(default_factory=dict)  # GenerateConfig overrides
    export: dict[str, Any] = field(default_factory=dict)  # ExportConfig overrides
    evaluate: dict[str, Any] = field(default_factory=dict)  # EvaluateConfig overrides (held-out episodes known)
    closed_loop: dict[str, Any] = field(default_factory=dict)  # ClosedLoopConfig (cosmos-synth closed-loop)

    def __post_init__(self) -> None:
        if self.source == "local" and self.dataset_dir is None:
            raise ValueError("source='local' needs dataset_dir: the folder holding metadata.csv and the videos.")
        if self.generate_shards < 1:
            raise ValueError(f"generate_shards={self.generate_shards} must be >= 1 (1: generate in the flow itself).")
        if self.source not in ("procedural", "local", "hub"):
            raise ValueError(f"source={self.source!r}: use 'procedural', 'local' or 'hub'.")
        for table, cls in STAGE_TABLES.items():
            if not isinstance(getattr(self, table), dict):
                raise ValueError(
                    f"{table}={getattr(self, table)!r} is not a table of {cls.__name__} settings; "
                    f"give one, e.g. {table}={{...}}."
                )
        self.stage_configs()  # every stage's settings are checked now, not hours later when that stage starts

    def stage_configs(self) -> dict[str, Any]:
        """Every stage's config, built once, by stage name. Building one only computes paths and checks values:
        nothing is written, downloaded or loaded. Generation and evaluation take the weights this run trains."""
        return {
            "demo": self.demo_config(),
            "ingest": self.ingest_config(),
            "preprocess": self.preprocess_config(),
            "cache": self.cache_config(),
            "train": self.train_config(),
            "generate": self.generate_config(adapter=self.trained_dir),
            "idm_train": self.idm_train_config(),
            "label": self.label_config(),
            "export": self.export_config(),
            "evaluate": self.evaluate_config(adapter=self.trained_dir),
            "closed_loop": self.closed_loop_config(),
        }

    # -- paths, written once ------------------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        """The dataset root ingest reads."""
        if self.source == "local":
            return self.dataset_dir
        if self.source == "hub":
            return self._hub_dir(self.dataset_repo)
        return self.run_dir / "data"

    @property
    def resolved_pairs_dir(self) -> Path:
        """The (image, prompt) folder generation reads."""
        if self.pairs_dir is not None:
            return self.pairs_dir
        if self.pairs_repo is not None:
            return self._hub_dir(self.pairs_repo) / self.pairs_subdir
        return self.data_dir / "test"

    def _hub_dir(self, repo: str) -> Path:
        """A local folder as it is; a Hub repo id downloads under cache_dir/datasets/."""
        return Path(repo) if Path(repo).is_dir() else self.cache_dir / "datasets" / repo.replace("/", "--")

    @property
    def resolved_model(self) -> str:
        if self.model == TINY:
            return str(self.cache_dir / "tiny-cosmos-predict2.5")
        return str(DEMO_WORLD_MODEL) if self.model == DEMO_WORLD else self.model

    def stage_dir(self, stage: str) -> Path:
        return self.run_dir / stage

    @property
    def trained_dir(self) -> Path:
        """The training stage's out_dir: the `adapter` that generate and evaluate take for this run's weights."""
        return self.train_config().out_dir

    # -- stage configs ------------------------------------------------------------------------------------------
    def demo_config(self) -> DemoDataConfig:
        base = dict(
            out_dir=self.data_dir,
            height=self.height,
            width=self.width,
            fps=self.fps,
            seed=self.seed,
            num_frames=self.num_frames,
        )
        return config_from_dict(DemoDataConfig, {**base, **self.demo}, where="demo")

    def ingest_config(self) -> IngestConfig:
        return IngestConfig(
            dataset_dir=self.data_dir,
            out_dir=self.stage_dir("ingest"),
            min_frames=self.num_frames,
            caption_prefix=self.caption_prefix,
            videos_dir=self.videos_dir,
            mode=self.mode,
        )

    def preprocess_config(self) -> PreprocessConfig:
        return PreprocessConfig(
            manifest=self.stage_dir("ingest") / MANIFEST,
            out_dir=self.stage_dir("preprocess"),
            height=self.height,
            width=self.width,
        )

    def cache_config(self) -> CacheConfig:
        base = dict(
            model=self.resolved_model,
            revision=self.revision,
            data_dir=self.stage_dir("preprocess"),
            out_dir=self.stage_dir("cache"),
            num_frames=self.num_frames,
            seed=self.seed,
            dtype=self.dtype,
            device=self.device,
        )
        return config_from_dict(CacheConfig, {**base, **self.cache}, where="cache")

    def train_config(self) -> TrainConfig:
        base = dict(
            model=self.resolved_model,
            revision=self.revision,
            data_dir=self.stage_dir("preprocess"),
            out_dir=self.stage_dir("train"),
            num_frames=self.num_frames,
            seed=self.seed,
            dtype=self.dtype,
            cpu=self.device == "cpu",
            latent_cache=self.stage_dir("cache") if self.latent_cache else None,
        )
        return config_from_dict(TrainConfig, {**base, **self.train}, where="train")

    def generate_config(self, adapter: Path | None) -> GenerateConfig:
        base = dict(
            model=self.resolved_model,
            revision=self.revision,
            adapter=adapter,
            pairs_dir=self.resolved_pairs_dir,
            out_dir=self.stage_dir("generate"),
            height=self.height,
            width=self.width,
            num_frames=self.num_frames,
            chunk_frames=self.num_frames,  # the window the model is trained on
            fps=self.fps,
            seed=self.seed,
            dtype=self.dtype,
            device=self.device,
            guardrail=self.guardrail,
            mode=self.mode,
        )
        return config_from_dict(GenerateConfig, {**base, **self.generate}, where="generate")

    def idm_train_config(self) -> IDMTrainConfig:
        base = dict(
            manifest=self.stage_dir("ingest") / MANIFEST,
            out_dir=self.stage_dir("idm"),
            seed=self.seed,
            device=self.device,
        )
        return config_from_dict(IDMTrainConfig, {**base, **self.idm_train}, where="idm_train")

    @property
    def idm_dir(self) -> Path:
        """The IDM that labels generated videos: the one given, else the one this run trains."""
        return self.idm if self.idm is not None else self.stage_dir("idm")

    def label_config(self) -> LabelConfig:
        return LabelConfig(
            manifest=self.stage_dir("generate") / MANIFEST,
            idm=self.idm_dir,
            out_dir=self.stage_dir("label"),
            device=self.device,
        )

    def export_config(self, episodes: Literal["generated", "real"] = "generated") -> ExportConfig:
        """The export of the run's generated episodes (label's manifest; generate's when the run does not label)
        into export/, or of its real ones (ingest's manifest, with their recorded trajectories) into export_real/.
        Columns are named after [idm_train]'s action_names / state_names unless [export] names them."""
        source = self.stage_dir("label" if self.label else "generate")
        names = {key: self.idm_train[key] for key in ("action_names", "state_names") if key in self.idm_train}
        base = dict(manifest=source / MANIFEST, out_dir=self.stage_dir("export"), fps=self.fps, **names)
        values = {**base, **self.export}
        if episodes == "real":
            values.update(manifest=self.stage_dir("ingest") / MANIFEST, out_dir=self.stage_dir("export_real"))
        return config_from_dict(ExportConfig, values, where="export")

    @property
    def resolved_heldout_dir(self) -> Path | None:
        """The held-out real episodes evaluate compares with: heldout_dir, else the procedural source's heldout/."""
        if self.heldout_dir is not None:
            return self.heldout_dir
        return self.data_dir / HELDOUT_DIR if self.source == "procedural" else None

    def evaluate_config(self, adapter: Path | None) -> EvaluateConfig:
        """Base model against this run's trained weights (named by train.adapter) on the held-out episodes. The
        procedural source's test/ pairs are those episodes' first frames, so the generate stage's videos are
        reused for the trained model; the base model's are generated under evaluate/base/."""
        gen = self.generate_config(adapter)
        trained = self.train_config().adapter
        base = dict(
            episodes_dir=self.resolved_heldout_dir or self.data_dir / HELDOUT_DIR,
            out_dir=self.stage_dir("evaluate"),
            models={"base": None, trained: str(adapter)},
            model=gen.model,
            revision=gen.revision,
            height=gen.height,
            width=gen.width,
            num_frames=gen.num_frames,
            chunk_frames=gen.chunk_frames,
            chunk_overlap_frames=gen.chunk_overlap_frames,
            num_steps=gen.num_steps,
            guidance_scale=gen.guidance_scale,
            fps=gen.fps,
            seed=gen.seed,
            dtype=gen.dtype,
            device=gen.device,
            guardrail=gen.guardrail,
            idm=str(self.idm_dir) if self.label else None,
        )
        if self.source == "procedural" and self.pairs_dir is None:
            base.update(pairs_dir=self.resolved_pairs_dir, generated={trained: str(gen.out_dir)})
        return config_from_dict(EvaluateConfig, {**base, **self.evaluate}, where="evaluate")

    def closed_loop_config(self) -> ClosedLoopConfig:
        return config_from_dict(ClosedLoopConfig, dict(self.closed_loop), where="closed_loop")


def _unknown_key(key: str, name: str, known: list[str], prefix: str, fallback: str) -> str:
    """`unknown key train.rnak (did you mean train.rank?)`: `name` is compared with `known`, and the closest one is
    given with `prefix`; `fallback` says what the keys are when none is close."""
    close = difflib.get_close_matches(name, known, n=1)
    return f"unknown key {key} " + (f"(did you mean {prefix}{close[0]}?)" if close else f"({fallback})")


def _check_keys(values: dict[str, Any]) -> None:
    """Refuse unknown top-level keys, unknown tables and unknown keys in a stage's table, each with the closest valid
    key. `values` is a recipe with its overrides applied (dotted keys already nested)."""
    top = [f.name for f in dataclasses.fields(RunConfig)]
    fields = {table: [f.name for f in dataclasses.fields(cls)] for table, cls in STAGE_TABLES.items()}
    every = top + [f"{table}.{name}" for table, names in fields.items() for name in names]
    problems = []
    for key, value in values.items():
        if key in STAGE_TABLES and isinstance(value, dict):  # a stage's keys are compared with that stage's only
            for name in (n for n in value if n not in fields[key]):
                problems.append(
                    f"unknown key {key}.{name} ({name} is a top-level key: write {name}=<value>)"
                    if name in top
                    else _unknown_key(
                        f"{key}.{name}", name, fields[key], f"{key}.", f"[{key}] takes {', '.join(fields[key])}"
                    )
                )
        elif key not in top:  # a misspelt top-level key or table: compared with every valid key
            leaves = [f"{key}.{name}" for name in value] if isinstance(value, dict) and value else [key]
            problems += [_unknown_key(leaf, leaf, every, "", f"top-level keys are {', '.join(top)}") for leaf in leaves]
    if problems:
        raise ValueError("; ".join(problems) + ".")


def _set_dotted(values: dict[str, Any], key: str, value: Any) -> None:
    head, _, rest = key.partition(".")
    if rest:
        values.setdefault(head, {})
        if not isinstance(values[head], dict):
            raise ValueError(f"override {key!r}: {head!r} is not a table of settings.")
        _set_dotted(values[head], rest, value)
    else:
        values[head] = value


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` → (key, value), the value parsed as JSON when it is JSON (numbers, booleans, dicts), else text."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ValueError(f"override {text!r}: write key=value, e.g. train.rank=16 or num_frames=29.")
    try:
        return key.strip(), json.loads(raw)
    except json.JSONDecodeError:
        return key.strip(), raw


def find_recipe(recipe: str | Path) -> Path:
    """A recipe name (`demo`, `gr1`) or a path to a TOML file."""
    path = Path(recipe)
    if path.suffix == ".toml":
        if not path.is_file():
            raise ValueError(f"Recipe file {path} does not exist.")
        return path
    path = RECIPES_DIR / str(recipe) / "recipe.toml"
    if not path.is_file():
        known = sorted(p.parent.name for p in RECIPES_DIR.glob("*/recipe.toml"))
        raise ValueError(f"Unknown recipe {recipe!r}; known recipes: {known}, or pass a path to a .toml file.")
    return path


def load_run_config(recipe: str | Path = "demo", overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a recipe and apply dotted overrides ({"train.rank": 16, "run_dir": "runs/x"}); check every key and build
    every stage's config once, so any mistake fails here, naming the recipe, before any work starts."""
    path = find_recipe(recipe)
    with path.open("rb") as fh:
        values: dict[str, Any] = tomllib.load(fh)
    values.pop("recipe", None)  # descriptive metadata (name, licence, source) lives in the recipe's [recipe] table
    where = f"recipe {path}"
    try:
        for key, value in (overrides or {}).items():
            _set_dotted(values, key, value)
        _check_keys(values)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc
    # Values arrive as TOML, JSON or text ("16", "runs/x"): each is coerced to its field's type or refused by name.
    return config_from_dict(RunConfig, values, where=where)
