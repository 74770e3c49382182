"""One frozen, keyword-only config per stage, validated before any work starts.

Each class is the CLI's arguments, the Prefect flow's parameters, the tests' input, and the record written next to
the stage's outputs (``<stage>_config.json``) so any output can be reproduced. Each checks its own values in
``__post_init__``; :func:`cosmos_synth.recipe.load_run_config` builds every stage's config as soon as a recipe
and its overrides are read, so a misspelt key or a wrong value for any stage (even export, the last) fails at once,
in the CLI and in the flow, before the first stage runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cosmos_synth.files import write_text_atomic
from cosmos_synth.models import NVIDIA_MODEL, NVIDIA_REVISION
from cosmos_synth.tracking import check_report_to

TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _check_frames(num_frames: int, name: str = "num_frames") -> None:
    _require(
        num_frames >= 1 and (num_frames - 1) % 4 == 0,
        f"{name}={num_frames}: the Wan VAE needs 4k+1 frames (e.g. 9, 29, 93); pick the nearest such value.",
    )


def _check_chunks(num_frames: int, chunk_frames: int, overlap: int) -> None:
    """Chained generation's settings (cosmos_synth.chain). A num_frames that is not whole chunks is allowed: the last
    chunk is generated in full and cut, and the generate stage logs how many frames that drops."""
    _check_frames(chunk_frames, "chunk_frames")
    _require(
        overlap in (1, 5),
        f"chunk_overlap_frames={overlap}: use 1 (the last frame: one latent frame) or 5 (the last 5 frames: two "
        "latent frames, as the Wan VAE encodes the first frame alone and each 4 more into one latent frame).",
    )
    _require(
        num_frames <= chunk_frames or chunk_frames > overlap,
        f"chunk_frames={chunk_frames} with chunk_overlap_frames={overlap}: a chunk would add no new frame; "
        f"use chunk_frames >= {overlap + 4} (the model's window, e.g. 93).",
    )


def _check_size(height: int, width: int) -> None:
    _require(
        height % 16 == 0 and width % 16 == 0 and height > 0 and width > 0,
        f"height={height}, width={width}: both must be positive multiples of 16 (e.g. 432x768).",
    )


@dataclass(frozen=True, kw_only=True)
class DemoDataConfig:
    """The demo world's recorder (cosmos_synth.sources.procedural): expert rollouts, deterministic for a seed."""

    # dataset root to write (GR1 layout: metadata.csv, videos/, trajectories/, test/ pairs, heldout/ episodes)
    out_dir: Path
    # pick_place: the pretraining family; push: the new family the demo world model never saw
    task_family: Literal["pick_place", "push"] = "pick_place"
    num_episodes: int = 8  # training episodes
    # pretraining-family (pick_place) episodes added to the training episodes of a new family: rehearsal, so that a
    # fine-tune on them does not forget what the model knew; scene seeds follow the demonstrations' (0: none)
    replay_episodes: int = 0
    # held-out episodes per held-out family: recorded under heldout/, their first frame + prompt as (image .png, prompt
    # .txt) pairs under test/
    num_test_pairs: int = 4
    # families of the held-out episodes (each on the same held-out scenes); empty: task_family only. E.g. ("push",
    # "pick_place") to see forgetting
    heldout_families: tuple[str, ...] = ()
    num_frames: int = 17  # frames per episode (at least 8: the expert's phases)
    height: int = 64  # pixels
    width: int = 96  # pixels
    fps: int = 16  # frames per second of the written videos
    seed: int = 0  # training episode i uses scene seed + i
    heldout_seed: int = 1_000_000  # held-out episode k uses scene heldout_seed + k (a range of its own)

    def __post_init__(self) -> None:
        object.__setattr__(self, "heldout_families", tuple(self.heldout_families))
        _require(
            set(self.heldout_families) <= {"pick_place", "push"}
            and len(set(self.heldout_families)) == len(self.heldout_families),
            f"heldout_families={list(self.heldout_families)}: use distinct families out of 'pick_place' and 'push'.",
        )
        _require(self.num_episodes >= 1, f"num_episodes={self.num_episodes}: need at least 1 episode.")
        _require(self.replay_episodes >= 0, f"replay_episodes={self.replay_episodes} must be >= 0.")
        _require(
            self.replay_episodes == 0 or self.task_family != "pick_place",
            f"replay_episodes={self.replay_episodes} with task_family='pick_place': replay adds pick_place episodes "
            "to a new family's; set task_family='push' or replay_episodes=0.",
        )
        _require(self.num_test_pairs >= 0, f"num_test_pairs={self.num_test_pairs} must be >= 0.")
        _require(self.num_frames >= 8, f"num_frames={self.num_frames}: an expert episode needs at least 8 frames.")
        _require(self.height >= 16 and self.width >= 16, "height and width must be at least 16 pixels.")
        _require(
            self.seed + self.num_training <= self.heldout_seed or self.seed >= self.heldout_seed + self.num_test_pairs,
            f"seeds {self.seed}..{self.seed + self.num_training - 1} overlap the held-out "
            f"seeds from heldout_seed={self.heldout_seed}; move seed or heldout_seed apart.",
        )

    @property
    def num_training(self) -> int:
        """Training episodes written: the demonstrations, then the replayed pretraining-family episodes."""
        return self.num_episodes + self.replay_episodes


@dataclass(frozen=True, kw_only=True)
class IngestConfig:
    """Read a dataset folder in the GR1 layout, validate every sample, write a manifest."""

    dataset_dir: Path  # root holding metadata.csv and the videos it names
    out_dir: Path  # where manifest.jsonl and ingest_config.json go
    min_frames: int = 93  # every video must have at least this many frames (the training window)
    caption_prefix: str = ""  # prepended to every caption, e.g. "The robot arm is performing a task. "
    # folder under dataset_dir holding the videos when metadata.csv names them by file name only (GR1-100: "gr1"); None:
    # paths are relative to dataset_dir
    videos_dir: str | None = None
    # bad samples: "strict" stops at the first; "lenient" skips each and records it in out_dir/quarantine.jsonl (see
    # cosmos_synth.validate)
    mode: Literal["strict", "lenient"] = "strict"

    def __post_init__(self) -> None:
        _require(self.min_frames >= 1, f"min_frames={self.min_frames} must be >= 1.")
        _require(
            self.mode in ("strict", "lenient"),
            f"mode={self.mode!r}: use 'strict' (stop at the first bad "
            f"sample) or 'lenient' (skip bad samples, recording each in quarantine.jsonl).",
        )


@dataclass(frozen=True, kw_only=True)
class PreprocessConfig:
    """Resize every ingested video to the training resolution and store it as uint8 frames."""

    manifest: Path  # ingest's manifest.jsonl
    out_dir: Path  # where clips/ and manifest.jsonl go
    height: int = 432  # pixels, multiple of 16
    width: int = 768  # pixels, multiple of 16

    def __post_init__(self) -> None:
        _check_size(self.height, self.width)


@dataclass(frozen=True, kw_only=True)
class CacheConfig:
    """Encode prompts and video windows once (see cosmos_synth.cache) so training holds only the DiT."""

    model: str = NVIDIA_MODEL  # Hub id or local folder
    revision: str | None = NVIDIA_REVISION  # Hub revision (ignored for local folders)
    data_dir: Path  # preprocess output (clips/ + manifest.jsonl)
    out_dir: Path  # prompts/, latents/, manifest.jsonl
    num_frames: int = 93  # frames per window (4k+1)
    num_windows: int = 4  # cached windows per video; training picks one per epoch
    seed: int = 0  # window starts are drawn from (seed, sample id)
    dtype: Literal["float32", "bfloat16"] = "bfloat16"
    device: str = "cuda"

    def __post_init__(self) -> None:
        _check_frames(self.num_frames)
        _require(self.num_windows >= 1, f"num_windows={self.num_windows} must be >= 1.")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """LoRA/DoRA (or full) fine-tuning of the Cosmos DiT with the reference flow-matching loss."""

    model: str = NVIDIA_MODEL  # Hub id or local folder
    revision: str | None = NVIDIA_REVISION  # Hub revision (ignored for local folders)
    data_dir: Path  # preprocess output (clips/ + manifest.jsonl)
    out_dir: Path  # checkpoints/, pytorch_lora_weights.safetensors, logs
    # full: every DiT parameter trains (rank, alpha and target_modules unused); weights go to out_dir/transformer/
    adapter: Literal["lora", "dora", "full"] = "lora"
    rank: int = 32  # LoRA rank r
    alpha: int = 32  # LoRA alpha (scale = alpha / rank)
    target_modules: tuple[str, ...] = TARGET_MODULES  # DiT linear layers that get adapters
    num_frames: int = 93  # frames per training window (4k+1)
    num_epochs: int = 500  # passes over the dataset; one window per video per epoch
    batch_size: int = 1  # clips per optimizer step and process (the reference: 1)
    learning_rate: float = 2**-14.5  # AdamW peak learning rate
    weight_decay: float = 0.001
    max_grad_norm: float = 1.0
    num_warmup_steps: int = 1000  # linear warm-up, in optimizer steps
    num_training_steps: int = 100_000  # horizon of the linear schedule (not the run length)
    f_min: float = 0.2  # schedule floor, as a fraction of learning_rate
    f_max: float = 0.5  # schedule ceiling after warm-up, fraction of learning_rate
    cfg_dropout_prob: float = 0.2  # probability of zeroing a sample's prompt embedding
    cond_frame_probs: dict[int, float] = field(default_factory=lambda: {1: 0.5, 2: 0.5})  # latent cond frames
    cond_frame_timestep: float = 0.0001  # timestep given to conditioning latent frames
    checkpoint_every_epochs: int = 100  # accelerate checkpoint period
    seed: int = 0
    dtype: Literal["float32", "bfloat16"] = "bfloat16"  # frozen weights' dtype; trained params stay float32
    gradient_checkpointing: bool = True
    num_processes: int = 1  # processes for `accelerate launch` (one per GPU)
    cpu: bool = False  # force CPU (tests, the demo)
    # cache stage output: train on cached latents + prompt embeddings (only the DiT on the GPU); None: encode per step
    latent_cache: Path | None = None
    # with gradient_checkpointing: how many of the DiT blocks to recompute (None: all; fewer is faster, needs more
    # memory)
    checkpoint_layers: int | None = None
    # what a checkpointed block keeps: its inputs only ("full"), or also its self-attention output, recomputing only
    # projections, norms, cross-attention and MLP (≈ 20% faster, ≈ 2 GiB more at full size)
    checkpoint_policy: Literal["full", "save_attention"] = "save_attention"
    compile: bool = False  # torch.compile each DiT block (regional; first step compiles)
    # with compile: fraction (0-1) of activations to keep; the compiler recomputes cheap ops for the rest (None:
    # default)
    activation_memory_budget: float | None = None
    attention_backend: str | None = None  # diffusers attention backend, e.g. "_native_cudnn"; None: SDPA
    # frozen block linears in FP8 (e4m3, per-row scales), forward and input gradient; needs compute capability 8.9+;
    # moves the loss slightly (benchmarks/RESULTS.md)
    fp8_matmuls: bool = False
    report_to: Literal["tensorboard", "wandb", "none"] = "tensorboard"  # per step: loss, lr, grad_norm, memory

    def __post_init__(self) -> None:
        # JSON (Prefect parameters, --param) delivers dict keys as strings: normalise them once, here.
        probs = {int(k): float(v) for k, v in dict(self.cond_frame_probs).items()}
        object.__setattr__(self, "cond_frame_probs", probs)
        object.__setattr__(self, "target_modules", tuple(self.target_modules))
        _require(set(probs) <= {1, 2} and probs, f"cond_frame_probs={probs}: keys must be 1 or 2 latent frames.")
        _require(abs(sum(probs.values()) - 1.0) < 1e-6, f"cond_frame_probs={probs}: probabilities must sum to 1.")
        _check_frames(self.num_frames)
        _require(self.num_frames >= 5, f"num_frames={self.num_frames}: training needs at least 2 latent frames (5).")
        _require(self.rank >= 1 and self.alpha >= 1, f"rank={self.rank}, alpha={self.alpha} must be >= 1.")
        _require(self.num_epochs >= 1, f"num_epochs={self.num_epochs} must be >= 1.")
        _require(self.batch_size >= 1, f"batch_size={self.batch_size} must be >= 1.")
        _require(0 <= self.cfg_dropout_prob <= 1, f"cfg_dropout_prob={self.cfg_dropout_prob} must be in [0, 1].")
        _require(0 <= self.f_min <= self.f_max <= 1, f"need 0 <= f_min ({self.f_min}) <= f_max ({self.f_max}) <= 1.")
        _require(self.checkpoint_every_epochs >= 1, "checkpoint_every_epochs must be >= 1.")
        _require(self.num_processes >= 1, f"num_processes={self.num_processes} must be >= 1.")
        _require(
            self.activation_memory_budget is None or 0 < self.activation_memory_budget <= 1,
            f"activation_memory_budget={self.activation_memory_budget} must be in (0, 1], e.g. 0.5.",
        )
        _require(
            self.checkpoint_layers is None or self.checkpoint_layers >= 0,
            f"checkpoint_layers={self.checkpoint_layers} must be >= 0 (or None for every block).",
        )
        check_report_to(self.report_to)


@dataclass(frozen=True, kw_only=True)
class GenerateConfig:
    """One video per (image .png, prompt .txt) pair, with NumPy-drawn initial latents."""

    model: str = NVIDIA_MODEL  # Hub id or local folder
    revision: str | None = NVIDIA_REVISION  # Hub revision (ignored for local folders)
    pairs_dir: Path  # folder of <id>.png + <id>.txt
    out_dir: Path  # videos/<id>.mp4 + manifest.jsonl
    adapter: Path | None = None  # folder holding pytorch_lora_weights.safetensors (None: base model)
    height: int = 432  # pixels, multiple of 16
    width: int = 768  # pixels, multiple of 16
    num_frames: int = 93  # output frames (4k+1); more than chunk_frames: one long video of chained chunks
    # frames per model call (4k+1): the model's window (93 for Cosmos Predict 2.5, 17 for the demo world model).
    # num_frames > chunk_frames chains chunks (cosmos_synth.chain): each continues from the one before
    chunk_frames: int = 93
    # frames of the video so far that the next chunk is conditioned on: 1 (one latent frame) or 5 (two latent frames,
    # which carry motion as well as the scene)
    chunk_overlap_frames: int = 5
    num_steps: int = 36  # denoising steps
    guidance_scale: float = 7.0  # classifier-free guidance
    fps: int = 16  # frames per second of the written mp4
    # the pair with index i uses seed + i, drawn with NumPy (chunk k > 0 of a long video: chain.chunk_seed)
    seed: int = 0
    dtype: Literal["float32", "bfloat16"] = "bfloat16"
    device: str = "cuda"  # "cuda", "cuda:1", "cpu"
    guardrail: bool = True  # NVIDIA's guardrail for NVIDIA weights (the tiny model has none)
    # CUDA: keep the text encoder in host memory, stream its layers while encoding, so it never shares the GPU with the
    # DiT
    stream_text_encoder: bool = True
    compile: bool = False  # torch.compile the DiT blocks once per worker (first video compiles)
    attention_backend: str | None = None  # diffusers attention backend, e.g. "_native_cudnn"; None: SDPA
    # block linears in FP8 (e4m3, per-row scales) after the adapter is fused; needs compute capability 8.9+; changes
    # pixels (RESULTS.md)
    fp8_matmuls: bool = False
    # blocks' self-attention in FP8 through cuDNN (Hopper+, the [fp8] extra); changes pixels (RESULTS.md)
    fp8_attention: bool = False
    # this run is one shard of a fanned-out generation: its manifest is shards/<shard>.jsonl, merged by the parent
    # (generate.merge_shards)
    shard: str | None = None
    sample_ids: tuple[str, ...] | None = None  # with shard: the pair ids this shard generates (None: every pair)
    # bad pairs: "strict" stops at the first; "lenient" skips each and records it in quarantine.jsonl (see
    # cosmos_synth.validate)
    mode: Literal["strict", "lenient"] = "strict"

    def __post_init__(self) -> None:
        if self.sample_ids is not None:
            object.__setattr__(self, "sample_ids", tuple(self.sample_ids))
        _require(
            self.shard is None or (self.shard.replace("-", "").replace("_", "").isalnum()),
            f"shard={self.shard!r}: use letters, digits, '-' and '_' (e.g. 'shard-003').",
        )
        _check_size(self.height, self.width)
        _check_frames(self.num_frames)
        _check_chunks(self.num_frames, self.chunk_frames, self.chunk_overlap_frames)
        _require(self.num_steps >= 1, f"num_steps={self.num_steps} must be >= 1.")
        _require(self.fps >= 1, f"fps={self.fps} must be >= 1.")
        _require(
            self.mode in ("strict", "lenient"),
            f"mode={self.mode!r}: use 'strict' (stop at the first bad "
            f"pair) or 'lenient' (skip bad pairs, recording each in quarantine.jsonl).",
        )


@dataclass(frozen=True, kw_only=True)
class ExportConfig:
    """Write episodes as robomimic HDF5, a LeRobot v3.0 dataset and (labelled episodes) a GR00T dataset."""

    # the episodes: label's manifest.jsonl (generated, IDM-labelled), generate's (generated, unlabelled) or ingest's
    # (real episodes with their recorded trajectories)
    manifest: Path
    out_dir: Path  # robomimic/<name>.hdf5, lerobot/, groot/
    # "required": labelled episodes carry their states (observation.state, obs/state), and a label manifest without
    # states (an IDM without a state head) is refused; "none": export without state, even where the episodes have it
    state: Literal["required", "none"] = "required"
    # column names for episodes whose manifest rows name none (ingest's); label rows carry their IDM's names. None:
    # action_0, ... / observation.state_0, ...
    action_names: tuple[str, ...] | None = None
    state_names: tuple[str, ...] | None = None
    repo_id: str = "cosmos-synth/demo"  # LeRobot repo id written into the dataset
    camera: str = "front"  # camera name: obs/<camera>_image, observation.images.<camera>
    fps: int = 16
    robot_type: str = "unknown"
    # LeRobot video codec: H.264 (every loader reads it) or AV1 (smaller; lerobot >= 0.4). The GR00T flavour is always
    # H.264.
    lerobot_codec: Literal["h264", "av1"] = "h264"
    groot_state_groups: dict[str, int] | None = None  # modality.json state groups: names and column counts in
    groot_action_groups: dict[str, int] | None = None  # order, e.g. {"arm": 6, "gripper": 1}; None: one group

    def __post_init__(self) -> None:
        _require("/" in self.repo_id, f"repo_id={self.repo_id!r}: use '<owner>/<name>'.")
        _require(self.camera.isidentifier(), f"camera={self.camera!r}: use a plain name such as 'front'.")
        _require(
            self.state in ("required", "none"),
            f"state={self.state!r}: use 'required' (episodes carry observation.state) or 'none' (export without it).",
        )
        for name in ("action_names", "state_names"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(str(n) for n in getattr(self, name)))
        for name in ("groot_state_groups", "groot_action_groups"):
            groups = getattr(self, name)
            if groups is None:
                continue
            _require(
                bool(groups)
                and all(isinstance(k, str) and k.isidentifier() for k in groups)
                and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in groups.values()),
                f'{name}={groups!r}: give names and whole column counts >= 1, e.g. {{"arm": 6, "gripper": 1}}.',
            )


# ---------------------------------------------------------------------------------------------- records and overrides


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config (paths as strings)."""

    def convert(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, dict):
            return {str(k): convert(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        return value

    return {f.name: convert(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


def write_config(cfg: Any, out_dir: Path, stage: str) -> Path:
    """Write `<stage>_config.json` next to a stage's outputs."""
    return write_text_atomic(
        out_dir / f"{stage}_config.json", json.dumps(config_to_dict(cfg), indent=2, sort_keys=True)
    )


_KINDS = {
    int: ("a whole number", "32"),
    float: ("a number", "0.5"),
    bool: ("true or false", "true"),
    str: ("text", '"cuda"'),
    Path: ("a path", '"runs/demo"'),
}  # what a field takes, and an example


def _coerce_scalar(value: Any, kind: type, name: str, where: str, example: str | None) -> Any:
    """`value` as int, float, bool, str or Path; text such as "16" or "true" (CLI, --param) is parsed."""
    if kind is Path and isinstance(value, (str, Path)):
        return Path(value)
    if kind is bool and isinstance(value, bool) or kind is str and isinstance(value, str):
        return value
    if kind is bool and isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if kind in (int, float) and isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = kind(value.strip())
    if kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    what, generic = _KINDS[kind]
    example = example or generic
    raise ValueError(
        f"{where}: {name}={value!r} is not {what}"
        + (" (it must be finite)" if kind is float and isinstance(value, float) else "")
        + f"; give {what}, e.g. {name}={example}."
    )


def _coerce(value: Any, annotation: Any, name: str, where: str = "config", example: str | None = None) -> Any:
    """Turn a JSON/CLI value into the field's type (Path, tuple, int from "16", ...), or raise a ValueError naming
    the field, the value and what it takes. Prefect parameters and --param overrides arrive as JSON or text."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if value is None and len(options) < len(args):
            return None
        return _coerce(value, options[0], name, where, example) if len(options) == 1 else value
    if value is None:
        raise ValueError(f"{where}: {name} is null but has no 'none' setting; give a value or leave it out.")
    if origin is Literal:
        if value in args:
            return value
        raise ValueError(f"{where}: {name}={value!r} is not one of {list(args)}; pick one of them.")
    if origin is tuple or annotation is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: {name}={value!r} is not a list; give a list, e.g. {name}=[...].")
        kinds = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args or [Any] * len(value))
        if len(kinds) != len(value):
            raise ValueError(f"{where}: {name}={value!r} has {len(value)} items; it takes {len(kinds)}.")
        return tuple(_coerce(v, k, f"{name}[{i}]", where) for i, (v, k) in enumerate(zip(value, kinds, strict=True)))
    if (origin is dict or annotation is dict) and not isinstance(value, dict):
        raise ValueError(f"{where}: {name}={value!r} is not a table; give one, e.g. {name}={{...}}.")
    if annotation in _KINDS:
        return _coerce_scalar(value, annotation, name, where, example)
    return value


def config_from_dict(cls: type, values: dict[str, Any], *, where: str = "config") -> Any:
    """Build `cls` from a dict (JSON, a recipe, CLI overrides, Prefect parameters), naming any unknown field and any
    value of the wrong type (`train: rank='abc' is not a whole number; ...`). Every error starts with `where`."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown} for {cls.__name__}; known fields: {sorted(names)}.")
    examples = {
        f.name: json.dumps(str(f.default) if isinstance(f.default, Path) else f.default)
        for f in dataclasses.fields(cls)
        if isinstance(f.default, (int, float, str, Path))
    }
    coerced = {k: _coerce(v, hints[k], k, where, examples.get(k)) for k, v in values.items()}
    try:
        return cls(**coerced)
    except ValueError as exc:  # the class's own checks (__post_init__): say where the values came from too
        raise ValueError(f"{where}: {exc}") from exc


def load_config(cls: type, path: Path) -> Any:
    """Read a config written by :func:`write_config`."""
    return config_from_dict(cls, json.loads(Path(path).read_text()), where=str(path))


@dataclass(frozen=True, kw_only=True)
class IDMTrainConfig:
    """Train the inverse-dynamics model (cosmos_synth.idm) on the ingested episodes that have trajectories."""

    # ingest's manifest.jsonl; rows whose "trajectory" .npz holds `action` (and `state`: then the IDM gets a state head)
    manifest: Path
    out_dir: Path  # idm.safetensors, idm_config.json, idm_metrics.json, this config
    # one name per action dim, e.g. ("delta_x", "delta_y", "gripper_command"); None: action_0, action_1, ...
    action_names: tuple[str, ...] | None = None
    # one name per state dim, e.g. ("gripper_x", "gripper_y", "gripper_opening", "object_x", "object_y"); None:
    # state_0, state_1, ...
    state_names: tuple[str, ...] | None = None
    clip_frames: int = 3  # k consecutive frames in, the actions of their k - 1 transitions out
    image_size: tuple[int, int] = (64, 96)  # (height, width) in pixels the frames are resized to
    num_epochs: int = 30  # passes over every training window (one window per start frame)
    batch_size: int = 64  # windows per optimizer step
    learning_rate: float = 1e-3  # AdamW peak learning rate (linear warm-up, cosine decay to 0)
    holdout_fraction: float = 0.25  # fraction of EPISODES (not frames) held out for evaluation, >= 1 episode
    seed: int = 0  # weights, shuffling and the held-out episodes
    device: str = "cpu"  # "cpu", "cuda", "cuda:1"
    report_to: Literal["tensorboard", "wandb", "none"] = "tensorboard"  # per epoch: loss, lr

    def __post_init__(self) -> None:
        check_report_to(self.report_to)
        for field_name in ("action_names", "state_names"):
            names = getattr(self, field_name)
            if names is None:
                continue
            names = tuple(str(name) for name in names)
            object.__setattr__(self, field_name, names)
            _require(
                len(set(names)) == len(names) and all(names),
                f"{field_name}={names}: names must be non-empty and distinct.",
            )
        size_message = f"image_size={self.image_size}: give (height, width), each at least 16 pixels (e.g. (64, 96))."
        _require(isinstance(self.image_size, (tuple, list)) and len(self.image_size) == 2, size_message)
        object.__setattr__(self, "image_size", tuple(int(v) for v in self.image_size))
        _require(min(self.image_size) >= 16, size_message)
        _require(2 <= self.clip_frames <= 16, f"clip_frames={self.clip_frames}: use 2 to 16 frames (e.g. 3).")
        _require(self.num_epochs >= 1, f"num_epochs={self.num_epochs} must be >= 1.")
        _require(self.batch_size >= 1, f"batch_size={self.batch_size} must be >= 1.")
        _require(self.learning_rate > 0, f"learning_rate={self.learning_rate} must be > 0 (e.g. 1e-3).")
        _require(
            0 < self.holdout_fraction < 1,
            f"holdout_fraction={self.holdout_fraction}: use a fraction in (0, 1), e.g. 0.25.",
        )


@dataclass(frozen=True, kw_only=True)
class LabelConfig:
    """Label every generated video with per-frame actions predicted by a trained IDM."""

    manifest: Path  # generate's manifest.jsonl
    # folder holding idm.safetensors + idm_config.json (train_idm's out_dir, or your own IDM saved the same way)
    idm: Path
    out_dir: Path  # actions/<sample_id>.npz, manifest.jsonl, label_config.json
    batch_size: int = 64  # clips per IDM forward pass
    device: str = "cpu"  # "cpu", "cuda", "cuda:1"

    def __post_init__(self) -> None:
        _require(self.batch_size >= 1, f"batch_size={self.batch_size} must be >= 1.")


@dataclass(frozen=True, kw_only=True)
class EvaluateConfig:
    """Held-out real episodes against what each model generates from their first frame and caption."""

    # held-out real episodes in the GR1 layout (metadata.csv + videos; trajectories/ for tracking error and IDM scores)
    episodes_dir: Path
    out_dir: Path  # metrics.json, episodes.jsonl, report.md, sheet-*.png, <model>/ videos
    # name -> training out_dir (LoRA/DoRA/full) or None for the base model, e.g. {"base": None, "lora":
    # "runs/demo/train"}
    models: dict[str, str | None] = field(default_factory=lambda: {"base": None})
    # name -> a generate out_dir already holding that model's videos of these episodes' pairs (reused, not generated
    # again)
    generated: dict[str, str] = field(default_factory=dict)
    # the episodes' (first frame, caption) pairs, ids = episode names; None: written from the videos into out_dir/pairs
    pairs_dir: Path | None = None
    model: str = NVIDIA_MODEL  # Hub id or local folder, as for generate
    revision: str | None = NVIDIA_REVISION
    height: int = 432  # generation settings, as for generate
    width: int = 768
    # the episodes' length; more than chunk_frames: chained chunks, measured per chunk (cosmos_synth.chunk_metrics)
    num_frames: int = 93
    chunk_frames: int = 93  # as for generate
    chunk_overlap_frames: int = 5  # as for generate
    num_steps: int = 36
    guidance_scale: float = 7.0
    fps: int = 16
    seed: int = 0
    dtype: Literal["float32", "bfloat16"] = "bfloat16"
    device: str = "cuda"
    guardrail: bool = True
    # an IDM folder: its labels of generated videos scored against the real episodes' actions (idm_action_mse)
    idm: Path | None = None
    # auto: the demo world's rule-based judge when every caption is a demo-world prompt; none: image metrics only
    # (GR1-style data)
    judge: Literal["auto", "demo", "none"] = "auto"
    max_episodes: int | None = None  # the first N held-out episodes (None: all)
    sheet_episodes: int = 4  # episodes drawn in each contact sheet (real above each model)

    def __post_init__(self) -> None:
        models = {str(k): (None if v in (None, "") else str(v)) for k, v in dict(self.models).items()}
        object.__setattr__(self, "models", models)
        object.__setattr__(self, "generated", {str(k): str(v) for k, v in dict(self.generated).items()})
        _require(
            bool(models) and all(k.replace("-", "").replace("_", "").isalnum() for k in models),
            f"models={models}: name at least one model, with letters, digits, '-' and '_' (e.g. base, lora).",
        )
        _require(
            set(self.generated) <= set(models),
            f"generated names {sorted(set(self.generated) - set(models))} "
            f"are not in models {sorted(models)}; reuse videos only of models being evaluated.",
        )
        _check_size(self.height, self.width)
        _check_frames(self.num_frames)
        _check_chunks(self.num_frames, self.chunk_frames, self.chunk_overlap_frames)
        _require(self.num_steps >= 1, f"num_steps={self.num_steps} must be >= 1.")
        _require(
            self.max_episodes is None or self.max_episodes >= 1,
            f"max_episodes={self.max_episodes} must be >= 1 (or null for every episode).",
        )


# ------------------------------------------------------------------------------------------- policies (demo world)


@dataclass(frozen=True, kw_only=True)
class PolicyTrainConfig:
    """Train a behaviour-cloning policy (cosmos_synth.policy) on robomimic exports: image + state + task -> actions."""

    datasets: tuple[Path, ...]  # robomimic .hdf5 files written by the export stage; their demos are pooled
    out_dir: Path  # policy.safetensors, policy_config.json, policy_metrics.json, this config
    camera: str = "front"  # reads obs/<camera>_image
    # the state dimensions the policy sees, by the export's state_names (e.g. the robot's own: gripper_x, gripper_y,
    # gripper_opening); None: every dimension
    state_keys: tuple[str, ...] | None = None
    chunk: int = 4  # actions predicted per observation: the action at t and the next chunk - 1
    num_steps: int = 2000  # optimizer steps (the same for any dataset size, so policies compare at equal compute)
    batch_size: int = 32  # (frame, chunk) samples per step
    learning_rate: float = 1e-3  # AdamW peak (linear warm-up over 5% of the steps, cosine decay to 0)
    shift_pixels: int = 4  # random-shift augmentation: pad by this many pixels, crop back at a random offset
    seed: int = 0  # weights and batch order
    device: str = "cpu"  # "cpu", "cuda", "cuda:1"

    def __post_init__(self) -> None:
        object.__setattr__(self, "datasets", tuple(Path(p) for p in self.datasets))
        _require(
            bool(self.datasets), "datasets=(): give at least one robomimic .hdf5 file written by the export stage."
        )
        _require(self.camera.isidentifier(), f"camera={self.camera!r}: use a plain name such as 'front'.")
        _require(1 <= self.chunk <= 16, f"chunk={self.chunk}: use 1 to 16 actions.")
        if self.state_keys is not None:
            object.__setattr__(self, "state_keys", tuple(str(k) for k in self.state_keys))
            _require(bool(self.state_keys), "state_keys=(): name at least one state dimension, or null for all.")
        _require(self.num_steps >= 1, f"num_steps={self.num_steps} must be >= 1.")
        _require(self.batch_size >= 1, f"batch_size={self.batch_size} must be >= 1.")
        _require(self.learning_rate > 0, f"learning_rate={self.learning_rate} must be > 0.")
        _require(0 <= self.shift_pixels <= 16, f"shift_pixels={self.shift_pixels}: use 0 (off) to 16.")


@dataclass(frozen=True, kw_only=True)
class ClosedLoopEvalConfig:
    """Roll a trained policy out in the demo world's simulator on held-out initial scenes and count successes."""

    policy: Path  # a folder written by train_policy
    out_dir: Path  # closed_loop.json (success rate, interval, per-episode rows) and videos/ of a few rollouts
    task_family: str = "push"  # a cosmos_synth.demo_world family
    num_episodes: int = 100  # rollouts, one per held-out scene
    # scene seeds first_seed .. first_seed + num_episodes - 1; the default is apart from the demo recorder's training
    # (seed + i) and held-out (heldout_seed + k) ranges, so no rollout starts from a demonstrated scene
    first_seed: int = 2_000_000
    max_steps: int = 24  # steps per rollout (the demonstrations take 16; the rest is slack for a slower policy)
    execute_steps: int = 1  # actions of each predicted chunk executed before the policy looks again
    height: int = 64  # the simulator's image size: the policy's training frames' size
    width: int = 96
    num_videos: int = 4  # rollouts written as mp4 (the first ones)
    fps: int = 16
    device: str = "cpu"

    def __post_init__(self) -> None:
        from cosmos_synth.demo_world import FAMILIES  # the demo world imports nothing from config

        _require(self.task_family in FAMILIES, f"task_family={self.task_family!r}: use one of {list(FAMILIES)}.")
        _require(self.num_episodes >= 1, f"num_episodes={self.num_episodes} must be >= 1.")
        _require(self.first_seed >= 0, f"first_seed={self.first_seed} must be >= 0.")
        _require(self.max_steps >= 1, f"max_steps={self.max_steps} must be >= 1.")
        _require(self.execute_steps >= 1, f"execute_steps={self.execute_steps} must be >= 1.")
        _check_size(self.height, self.width)
        _require(0 <= self.num_videos <= self.num_episodes, f"num_videos={self.num_videos}: use 0 to num_episodes.")


@dataclass(frozen=True, kw_only=True)
class ClosedLoopConfig:
    """The closed-loop experiment's own settings (recipe table [closed_loop]); the demonstrations, the fine-tune and
    the generated videos are the run's (its [demo], [train] and [generate] tables)."""

    policy_seeds: tuple[int, ...] = (0, 1, 2)  # one policy per seed and training set
    num_rollouts: int = 100  # closed-loop episodes per policy, one per held-out scene
    rollout_seed: int = 2_000_000  # scene seeds of the rollouts: rollout_seed .. rollout_seed + num_rollouts - 1
    max_steps: int = 24  # steps per rollout (the demonstrations take num_frames - 1)
    execute_steps: int = 1  # actions of each predicted chunk executed before the policy looks again
    chunk: int = 4  # actions the policy predicts per observation
    # the state the policies see, by the exports' state_names, e.g. ["gripper_x", "gripper_y", "gripper_opening"]
    # for the robot's own only; None: every state dimension (for generated episodes, the IDM's labels)
    policy_state: tuple[str, ...] | None = None
    policy_steps: int = 2000  # optimizer steps per policy, whatever its training set's size
    policy_batch_size: int = 32
    num_videos: int = 4  # rollout videos written per policy
    results: Path | None = None  # a copy of the results (e.g. benchmarks/results/closed_loop.json); None: run_dir only

    def __post_init__(self) -> None:
        object.__setattr__(self, "policy_seeds", tuple(int(s) for s in self.policy_seeds))
        _require(
            bool(self.policy_seeds) and len(set(self.policy_seeds)) == len(self.policy_seeds),
            f"policy_seeds={self.policy_seeds}: give one or more distinct seeds, e.g. [0, 1, 2].",
        )
        _require(self.num_rollouts >= 1, f"num_rollouts={self.num_rollouts} must be >= 1.")
        _require(self.rollout_seed >= 0, f"rollout_seed={self.rollout_seed} must be >= 0.")
        _require(self.max_steps >= 1, f"max_steps={self.max_steps} must be >= 1.")
        _require(self.execute_steps >= 1, f"execute_steps={self.execute_steps} must be >= 1.")
        _require(1 <= self.chunk <= 16, f"chunk={self.chunk}: use 1 to 16 actions.")
        _require(self.policy_steps >= 1, f"policy_steps={self.policy_steps} must be >= 1.")
        _require(self.policy_batch_size >= 1, f"policy_batch_size={self.policy_batch_size} must be >= 1.")
        _require(0 <= self.num_videos <= self.num_rollouts, f"num_videos={self.num_videos}: use 0 to num_rollouts.")
        if self.results is not None:
            object.__setattr__(self, "results", Path(self.results))
