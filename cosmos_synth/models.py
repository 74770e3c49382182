"""The one loading path for Cosmos Predict 2.5 pipelines, and the tiny offline model.

Everything in cosmos-synth gets its pipeline from :func:`load_pipeline`, which calls
``Cosmos2_5_PredictBasePipeline.from_pretrained(model, revision=..., dtype=...)``. The real model is
``nvidia/Cosmos-Predict2.5-2B`` at revision ``diffusers/base/post-trained``; the embedded default is a tiny model built
from the same diffusers/transformers classes with random weights, saved once with ``save_pretrained`` and then
loaded through exactly the same call.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch

from cosmos_synth.files import atomic_dir

logger = logging.getLogger(__name__)

NVIDIA_MODEL = "nvidia/Cosmos-Predict2.5-2B"
NVIDIA_REVISION = "diffusers/base/post-trained"
TINY_MARKER = "cosmos_synth_tiny.json"  # written last: a folder without it is an interrupted build
# written last into a model cosmos-synth trained itself (the demo world model): what it is and how it was made
MODEL_MARKER = "cosmos_synth_model.json"
DEMO_WORLD_MODEL = Path(__file__).resolve().parent.parent / "datasets" / "demo" / "world_model"
NOOP_CHECKER = ["cosmos_synth.safety", "NoOpSafetyChecker"]

# What a training run leaves in its out_dir, by train.adapter: "lora"/"dora" write ADAPTER_FILE (diffusers' LoRA
# format); "full" writes a whole DiT under FULL_DIR (CosmosTransformer3DModel.save_pretrained, safetensors).
ADAPTER_FILE = "pytorch_lora_weights.safetensors"
FULL_DIR = "transformer"
FULL_WEIGHTS = "diffusion_pytorch_model.safetensors"

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# The tiny model's sizes. The text encoder's hidden size x layers is what the DiT's cross-attention projection
# takes in, exactly as 3584 x 28 = 100352 for the real Qwen2.5-VL-7B.
TINY_TEXT_HIDDEN = 16
TINY_TEXT_LAYERS = 2
TINY_MAX_SEQUENCE_LENGTH = 512  # the pipeline pads every prompt to 512 tokens, as for the real model

_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def is_tiny_model(model: str | Path) -> bool:
    """True when `model` is a local folder holding the tiny offline model."""
    return (Path(model) / TINY_MARKER).is_file()


def is_project_model(model: str | Path) -> bool:
    """True for the models cosmos-synth builds itself (the tiny model, the demo world model): no NVIDIA weights,
    so no NVIDIA guardrail."""
    return is_tiny_model(model) or (Path(model) / MODEL_MARKER).is_file()


def _byte_level_symbols() -> list[str]:
    """The 256 printable symbols a byte-level BPE uses for raw bytes (the GPT-2 mapping)."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes, extra = [], 0
    for b in range(256):
        if b in printable:
            codes.append(b)
        else:
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def _build_tiny_tokenizer():
    from transformers import Qwen2Tokenizer

    vocab = {symbol: i for i, symbol in enumerate(_byte_level_symbols())}
    for token in _SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], additional_special_tokens=_SPECIAL_TOKENS[1:])
    tokenizer.chat_template = _CHAT_TEMPLATE
    tokenizer.model_max_length = TINY_MAX_SEQUENCE_LENGTH
    return tokenizer


def _build_tiny_components(seed: int) -> dict:
    from diffusers import AutoencoderKLWan, CosmosTransformer3DModel, UniPCMultistepScheduler
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(seed)
    tokenizer = _build_tiny_tokenizer()
    vocab_end = len(tokenizer)
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": TINY_TEXT_HIDDEN,
        "intermediate_size": 32,
        "num_hidden_layers": TINY_TEXT_LAYERS,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "max_position_embeddings": 1024,
        "bos_token_id": None,
        "eos_token_id": vocab_end - 1,
        "pad_token_id": None,
        "layer_types": ["full_attention"] * TINY_TEXT_LAYERS,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [1, 1, 2]},
    }
    vision_config = {
        "depth": 1,
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_heads": 2,
        "out_hidden_size": 16,
        "fullatt_block_indexes": [0],
    }
    text_encoder = Qwen2_5_VLForConditionalGeneration(
        Qwen2_5_VLConfig(text_config=text_config, vision_config=vision_config)
    )
    transformer = CosmosTransformer3DModel(
        in_channels=17,
        out_channels=16,
        num_attention_heads=2,
        attention_head_dim=16,
        num_layers=2,
        mlp_ratio=2.0,
        text_embed_dim=32,
        adaln_lora_dim=8,
        max_size=(32, 64, 64),
        patch_size=(1, 2, 2),
        rope_scale=(1.0, 3.0, 3.0),
        concat_padding_mask=True,
        extra_pos_embed_type=None,
        use_crossattn_projection=True,
        crossattn_proj_in_channels=TINY_TEXT_HIDDEN * TINY_TEXT_LAYERS,
        encoder_hidden_states_channels=32,
    )
    vae = AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )
    scheduler = UniPCMultistepScheduler(
        use_karras_sigmas=True, use_flow_sigmas=True, prediction_type="flow_prediction", sigma_max=200.0, sigma_min=0.01
    )
    return dict(text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer, vae=vae, scheduler=scheduler)


def build_tiny_model(folder: Path, *, seed: int = 0) -> Path:
    """Build the tiny Cosmos-architecture model with random weights and save it to `folder` (once).

    The folder is written under a temporary name and renamed (files.atomic_dir), so an interrupted build never
    looks complete.
    Returns `folder`. A folder that already holds a complete tiny model is left as it is.
    """
    from diffusers import Cosmos2_5_PredictBasePipeline

    from cosmos_synth.safety import NoOpSafetyChecker

    folder = Path(folder)
    if is_tiny_model(folder):
        return folder
    if folder.exists() and any(folder.iterdir()):
        raise ValueError(f"{folder} exists and is not a tiny cosmos-synth model; choose an empty or new folder.")
    with atomic_dir(folder) as tmp:
        pipe = Cosmos2_5_PredictBasePipeline(**_build_tiny_components(seed), safety_checker=NoOpSafetyChecker())
        pipe.save_pretrained(tmp, safe_serialization=True)
        (tmp / TINY_MARKER).write_text(json.dumps({"seed": seed, "note": "random weights, for tests and the demo"}))
    logger.info("built tiny model -> %s", folder)
    return folder


def _safety_checker_for(model: str | Path, guardrail: bool):
    """The checker to hand the pipeline: the no-op for the project's own models, NVIDIA's guardrail otherwise."""
    from cosmos_synth.safety import NoOpSafetyChecker

    if is_project_model(model):
        return NoOpSafetyChecker()
    if not guardrail:
        logger.warning("guardrail disabled by configuration for %s; you are responsible for the model licence", model)
        return NoOpSafetyChecker()
    from diffusers.utils import is_cosmos_guardrail_available

    if not is_cosmos_guardrail_available():
        raise ValueError(
            f"Model {model} needs NVIDIA's Cosmos guardrail (its licence expects it), but package `cosmos-guardrail` "
            "is not installed. Install it with `pip install 'cosmos-synth[guardrail]'`, or opt out explicitly with "
            "guardrail=false (CLI: --no-guardrail)."
        )
    from cosmos_guardrail import CosmosSafetyChecker

    return CosmosSafetyChecker()


def load_pipeline(
    model: str | Path,
    revision: str | None = None,
    *,
    dtype: str = "bfloat16",
    device: str = "cpu",
    guardrail: bool = True,
    skip: tuple[str, ...] = (),
):
    """Load a Cosmos Predict 2.5 pipeline: a Hub id (with `revision`) or a local folder, the same call for both.

    `dtype` is one of float32, bfloat16, float16. Local folders ignore `revision`. Components named in `skip`
    (e.g. "text_encoder", "tokenizer" when prompt embeddings are cached) are not loaded at all.
    """
    from diffusers import Cosmos2_5_PredictBasePipeline

    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported; use one of {sorted(DTYPES)}.")
    local = Path(model).is_dir()
    pipe = Cosmos2_5_PredictBasePipeline.from_pretrained(
        str(model),
        revision=None if local else revision,
        dtype=DTYPES[dtype],
        use_safetensors=True,  # never unpickle weights
        safety_checker=_safety_checker_for(model, guardrail),
        **{name: None for name in skip},
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def model_fingerprint(model: str | Path, revision: str | None) -> str:
    """A string naming what weights a result came from: `<hub id>@<revision>`, or for a local folder its path plus
    a digest of its files' names, sizes and modification times (so rebuilding the folder changes it)."""
    folder = Path(model)
    if not folder.is_dir():
        return f"{model}@{revision}" if revision else str(model)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return f"{folder.resolve()}#{digest.hexdigest()[:16]}"


def trained_weights_file(folder: Path) -> Path:
    """The file a training out_dir's weights live in: the LoRA/DoRA adapter, or a full fine-tune's DiT."""
    folder = Path(folder)
    for candidate in (folder / ADAPTER_FILE, folder / FULL_DIR / FULL_WEIGHTS):
        if candidate.is_file():
            return candidate
    raise ValueError(
        f"adapter {folder} holds neither {ADAPTER_FILE} (LoRA/DoRA) nor {FULL_DIR}/{FULL_WEIGHTS} "
        f"(a full fine-tune); point adapter at a training out_dir."
    )


def load_full_transformer(pipe, folder: Path) -> None:
    """Put a full fine-tune's DiT (folder/transformer/, safetensors) in place of the pipeline's, same architecture."""
    from diffusers import CosmosTransformer3DModel

    base = pipe.transformer
    path = Path(folder) / FULL_DIR
    trained = CosmosTransformer3DModel.from_pretrained(str(path), use_safetensors=True, dtype=base.dtype)
    keys = (
        "num_layers",
        "num_attention_heads",
        "attention_head_dim",
        "in_channels",
        "out_channels",
        "patch_size",
        "crossattn_proj_in_channels",
        "text_embed_dim",
    )
    mismatched = {
        k: (trained.config.get(k), base.config.get(k)) for k in keys if trained.config.get(k) != base.config.get(k)
    }
    if mismatched:
        raise ValueError(
            f"full fine-tune {path} does not fit the model it is loaded into: {mismatched} "
            f"(fine-tune, base); generate with the model it was trained from."
        )
    pipe.transformer = trained.to(base.device)
