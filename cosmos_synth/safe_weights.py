"""Weights and adapters, checked before anything loads them: safetensors only, never a pickle, and an adapter's
keys, shapes and rank against the DiT it is fused into (:func:`validate_adapter_file`)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")  # weight files that are (or may be) pickles
SAFE_FIX = "re-save it with safetensors' save_file on a machine you trust"

# How diffusers (and peft) name an adapter's tensors: <layer><suffix> -> the part of the LoRA it is.
ADAPTER_SUFFIXES = {
    ".lora.down.weight": "down",
    ".lora_A.weight": "down",
    ".lora.up.weight": "up",
    ".lora_B.weight": "up",
    ".lora_magnitude_vector": "magnitude",
    ".lora_magnitude_vector.weight": "magnitude",
}


def _pickle_hint(path: Path) -> str:
    """What a file that is not safetensors looks like, from its first bytes."""
    with Path(path).open("rb") as fh:
        head = fh.read(4)
    return (
        " (it is a zip archive, which is how torch.save writes a pickle)"
        if head == b"PK\x03\x04"
        else " (it is a Python pickle)"
        if head[:1] == b"\x80"
        else ""
    )


def _read_header(path: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """(tensor shapes, metadata) of a safetensors file, read from its JSON header only."""
    if not path.is_file():
        raise ValueError(f"adapter file {path} does not exist; point adapter at a training out_dir.")
    if path.suffix != ".safetensors":
        raise ValueError(
            f"adapter {path} is a {path.suffix or 'suffix-less'} file, not safetensors; cosmos-synth "
            f"loads adapters from safetensors only and never unpickles one (a pickle can run code when "
            f"loaded). Convert it: {SAFE_FIX}, as pytorch_lora_weights.safetensors."
        )
    try:
        with safe_open(str(path), framework="pt") as fh:
            return {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}, fh.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise ValueError(
            f"adapter {path} is not a safetensors file{_pickle_hint(path)} ({exc}); cosmos-synth loads "
            f"adapters from safetensors only; {SAFE_FIX}."
        ) from exc


def _group_by_layer(path: Path, shapes: dict[str, tuple[int, ...]]) -> dict[str, dict[str, tuple[str, tuple]]]:
    """{layer name in the DiT: {"down" | "up" | "magnitude": (key, shape)}}."""
    layers: dict[str, dict[str, tuple[str, tuple]]] = {}
    for key, shape in shapes.items():
        name = key.removeprefix("transformer.")
        suffix = next((s for s in ADAPTER_SUFFIXES if name.endswith(s)), None)
        if suffix is None:
            raise ValueError(
                f"adapter {path}: tensor {key!r} is not a LoRA/DoRA weight (names end in "
                f".lora.down.weight / .lora.up.weight as diffusers saves them); is this a full model "
                f"checkpoint rather than an adapter?"
            )
        layers.setdefault(name[: -len(suffix)], {})[ADAPTER_SUFFIXES[suffix]] = (key, shape)
    if not layers:
        raise ValueError(f"adapter {path} holds no tensors; point adapter at a finished training run's out_dir.")
    return layers


def _linear(transformer: torch.nn.Module, name: str) -> torch.nn.Linear | None:
    try:
        module = transformer.get_submodule(name)
    except AttributeError:
        return None
    module = getattr(module, "base_layer", module)  # already wrapped by peft: check the layer underneath
    return module if isinstance(module, torch.nn.Linear) else None


def _check_shapes(path: Path, layers: dict, transformer: torch.nn.Module) -> dict[str, int]:
    """Every adapted layer exists in `transformer` and every tensor fits it; returns {layer: rank}."""
    missing = [name for name in layers if _linear(transformer, name) is None]
    if missing:
        raise ValueError(
            f"adapter {path}: {len(missing)} of its {len(layers)} adapted layers are not linear layers "
            f"of this DiT (e.g. {missing[:3]}); it was trained for another architecture. Use an "
            f"adapter trained on this model."
        )
    ranks = {}
    for name, parts in layers.items():
        if "down" not in parts or "up" not in parts:
            raise ValueError(
                f"adapter {path}: layer {name} has {sorted(parts)} but needs both lora.down and lora.up "
                f"weights; the file is incomplete. Re-save it from the training run."
            )
        layer, rank = _linear(transformer, name), parts["down"][1][0]
        wanted = {
            "down": (rank, layer.in_features),
            "up": (layer.out_features, rank),
            "magnitude": (layer.out_features,),
        }
        for kind, (key, shape) in parts.items():
            if tuple(shape) != wanted[kind]:
                raise ValueError(
                    f"adapter {path}: {key} has shape {list(shape)} but layer {name} of this DiT is "
                    f"Linear(in_features={layer.in_features}, out_features={layer.out_features}), "
                    f"which needs {list(wanted[kind])}; the adapter was trained for another model "
                    f"size. Use an adapter trained on this model."
                )
        ranks[name] = rank
    return ranks


def _check_metadata(path: Path, metadata: dict[str, str], ranks: dict[str, int], layers: dict) -> bool:
    """The rank (and DoRA) the file's peft metadata promises match its tensors; returns whether it is DoRA."""
    dora = any("magnitude" in parts for parts in layers.values())
    raw = metadata.get("lora_adapter_metadata")
    if raw is None:
        return dora
    try:
        config = {k.removeprefix("transformer."): v for k, v in json.loads(raw).items()}
    except (json.JSONDecodeError, AttributeError) as exc:
        raise ValueError(
            f"adapter {path}: its lora_adapter_metadata is not a JSON object ({exc}); re-save the "
            f"adapter with save_lora_weights."
        ) from exc
    pattern = config.get("rank_pattern") or {}
    for name, rank in ranks.items():
        wanted = next((r for p, r in pattern.items() if re.match(rf"(.*\.)?({p})$", name)), config.get("r", rank))
        if rank != wanted:
            raise ValueError(
                f"adapter {path}: its metadata says rank r={wanted} but layer {name} has rank {rank}; "
                f"diffusers would build rank-{wanted} layers that cannot hold it. Re-save the adapter "
                f"from one training run (save_lora_weights writes tensors and metadata together)."
            )
    if "use_dora" in config and bool(config["use_dora"]) != dora:
        raise ValueError(
            f"adapter {path}: its metadata says use_dora={config['use_dora']} but the file "
            f"{'has' if dora else 'has no'} DoRA magnitude vectors; re-save it from one training run."
        )
    return dora


def validate_adapter_file(path: Path, transformer: torch.nn.Module) -> dict[str, Any]:
    """Check a LoRA/DoRA adapter file against `transformer` (the DiT it is for) before loading it into a pipeline.

    Safetensors only (a pickle is refused unread); every tensor names a linear layer of this DiT with the right
    shape; the rank and DoRA flag agree with the file's metadata; no NaN or Inf. Raises ValueError naming the file,
    the mismatch and the fix. Returns {"file", "num_layers", "rank", "dora"} (rank: the largest, when they vary).
    """
    path = Path(path)
    shapes, metadata = _read_header(path)
    layers = _group_by_layer(path, shapes)
    ranks = _check_shapes(path, layers, transformer)
    dora = _check_metadata(path, metadata, ranks, layers)
    with safe_open(str(path), framework="pt") as fh:
        for key in shapes:
            if not bool(torch.isfinite(fh.get_tensor(key)).all()):
                raise ValueError(
                    f"adapter {path}: tensor {key} holds NaN or Inf; the run that wrote it diverged. "
                    f"Retrain with a lower learning_rate or use an earlier checkpoint."
                )
    return {"file": str(path), "num_layers": len(layers), "rank": max(ranks.values()), "dora": dora}


def check_weights_folder(folder: Path) -> None:
    """Refuse a local model folder where some component's weights exist only as pickles (.bin, .pt, ...).

    `load_pipeline` asks diffusers for safetensors only, so such a folder never loads; this says why and how to fix it.
    """
    folder = Path(folder)
    for component in [folder, *sorted(p for p in folder.iterdir() if p.is_dir())]:
        pickles = sorted(p.name for p in component.iterdir() if p.is_file() and p.suffix in PICKLE_SUFFIXES)
        if pickles and not any(component.glob("*.safetensors")):
            where = component.relative_to(folder)
            raise ValueError(
                f"Model folder {folder}: {where / pickles[0]} is a pickle checkpoint and {where}/ holds "
                f"no .safetensors weights; cosmos-synth loads weights from safetensors only and never "
                f"unpickles them (a pickle can run code when loaded). Convert it on a machine you trust "
                f"with save_pretrained(..., safe_serialization=True)."
            )
