"""The demo world model: a small Cosmos Predict 2.5 pipeline trained from scratch on the demo world.

The same classes as the real model (CosmosTransformer3DModel, AutoencoderKLWan, a Qwen2.5-VL text encoder and
tokenizer, the UniPC scheduler), sized to learn the demo world and to generate a video in seconds on a CPU:

- tokenizer: byte-level BPE whose merges make every word of the demo world's prompts one token;
- text encoder: a 2-layer Qwen2.5-VL with random (seeded) weights: frozen, as in the real recipe; its per-token
  features are what the DiT's cross-attention learns to read;
- VAE: AutoencoderKLWan trained here for reconstruction (stage "vae") on clips of every task family, its latent
  statistics measured on the training set and stored in its config (latents_mean / latents_std), as the pipeline
  expects. It is the world's video tokenizer, as Cosmos' own is trained on generic video: it encodes and decodes
  clips and cannot generate, so it teaches the model no task. A tokenizer trained on pick_place alone could not
  represent pushes (the arm and objects at the table's edges blur away: 21 dB), and no fine-tune of the DiT can
  get past a tokenizer that cannot draw the new task;
- DiT: trained from random weights with the project's own training loop, `adapter = "full"` (stage "dit"), on the
  latent cache of the same episodes, every DiT parameter learning the flow-matching objective.

The DiT learns from expert episodes of the pretraining family only (pick_place): the push family stays new to it.
Two stages, each within one GPU call of a few minutes, chained through the work folder:

    python -m cosmos_synth.world_model vae --work-dir runs/world --out-dir datasets/demo/world_model
    python -m cosmos_synth.world_model dit --work-dir runs/world --out-dir datasets/demo/world_model

Weights are written in bfloat16 (loading with dtype="float32" upcasts them) to keep the shipped folder small.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cosmos_synth.config import TrainConfig, config_to_dict
from cosmos_synth.demo_world import FAMILIES, PRETRAINING_FAMILY, rollout_expert
from cosmos_synth.demo_world.render import TABLE_EDGE_RGB, TABLE_RGB
from cosmos_synth.demo_world.scene import (
    CONTAINER_COLOURS,
    CONTAINER_PREPOSITION,
    EDGES,
    OBJECT_COLOURS,
    OBJECT_KINDS,
    PICK_PROMPT,
    PUSH_PROMPT,
)
from cosmos_synth.demo_world.sim import DemoWorld
from cosmos_synth.files import atomic_dir, write_jsonl, write_text_atomic
from cosmos_synth.layout import MANIFEST
from cosmos_synth.models import _CHAT_TEMPLATE, _SPECIAL_TOKENS, MODEL_MARKER, _byte_level_symbols

logger = logging.getLogger(__name__)

VAE_DIR, CACHE_DIR, DIT_DIR = "vae", "cache", "dit"
VAE_INPUTS = ("num_episodes", "num_frames", "height", "width", "seed", "time_limit_s")  # with vae_*: the VAE stage
TEXT_HIDDEN, TEXT_LAYERS, TEXT_HEADS = 32, 2, 2
MROPE_SECTION = [2, 3, 3]  # Qwen2.5-VL's rotary sections (time, height, width): head_dim / 2 = 8
MAX_SEQUENCE_LENGTH = 512  # the pipeline pads every prompt to 512 tokens


@dataclass(frozen=True, kw_only=True)
class WorldModelConfig:
    """How the demo world model is built; written into the model folder's marker."""

    work_dir: Path  # vae/, cache/ and dit/ while building
    out_dir: Path  # the finished model folder (save_pretrained layout)
    num_episodes: int = 8000  # pick_place expert episodes (scene seeds seed .. seed + num_episodes - 1)
    num_frames: int = 17  # frames per episode and per generated video (4k+1)
    height: int = 64  # pixels
    width: int = 96  # pixels
    seed: int = 0  # episodes, weights and training order
    vae_base_dim: int = 32  # AutoencoderKLWan base_dim (dim_mult [1, 2, 2, 2], z_dim 16)
    vae_steps: int = 3000  # reconstruction steps
    vae_batch_size: int = 32  # clips per VAE step
    vae_learning_rate: float = 5e-4  # AdamW peak (linear warm-up, cosine decay to a tenth)
    vae_object_weight: float = 8.0  # extra loss weight of pixels that are not bare table (objects are small)
    vae_kl_weight: float = 1e-6
    # task families of the VAE's clips (comma-separated; num_episodes split evenly): the tokenizer sees every family
    vae_families: str = ",".join(FAMILIES)
    dit_layers: int = 8  # CosmosTransformer3DModel num_layers
    dit_heads: int = 6  # attention heads of 32 dimensions
    dit_epochs: int = 30  # passes over the episodes
    dit_batch_size: int = 64  # clips per DiT step
    dit_learning_rate: float = 3e-4  # AdamW peak (warm-up, then linear decay to a tenth)
    cfg_dropout_prob: float = 0.1  # prompt embeddings zeroed per clip (what CFG's unconditional branch sees)
    time_limit_s: float | None = None  # stop the VAE stage early (the steps done are recorded)
    device: str = "cuda"

    def __post_init__(self) -> None:
        if (self.num_frames - 1) % 4 or self.num_frames < 9:
            raise ValueError(f"num_frames={self.num_frames}: use 4k+1 frames, at least 9 (e.g. 17).")
        if self.num_episodes < 2:
            raise ValueError(f"num_episodes={self.num_episodes}: need at least 2 episodes.")
        families = self.vae_families.split(",")
        if not families or not set(families) <= set(FAMILIES) or len(set(families)) != len(families):
            raise ValueError(f"vae_families={self.vae_families!r}: name distinct families out of {list(FAMILIES)}.")


# ------------------------------------------------------------------------------------------------------ components


def demo_vocabulary() -> list[str]:
    """Every word of the demo world's prompts, in the byte-level form the tokenizer sees (a leading space is Ġ)."""
    texts = [
        PICK_PROMPT.format(colour=c, kind=k, prep=CONTAINER_PREPOSITION[b], container=b)
        for c in OBJECT_COLOURS
        for k in OBJECT_KINDS
        for b in CONTAINER_COLOURS
    ]
    texts += [PUSH_PROMPT.format(colour=c, kind=k, edge=e) for c in OBJECT_COLOURS for k in OBJECT_KINDS for e in EDGES]
    words = {w for text in texts for w in text.rstrip(".").split(" ")}
    return sorted(w if w == "The" else "Ġ" + w for w in words)


def build_tokenizer():
    """A Qwen2 byte-level BPE tokenizer whose merges spell each demo-world word as one token."""
    from transformers import Qwen2Tokenizer

    vocab = {symbol: i for i, symbol in enumerate(_byte_level_symbols())}
    merges: list[tuple[str, str]] = []
    for word in demo_vocabulary():
        current = word[0]
        for char in word[1:]:
            if (current, char) not in merges:
                merges.append((current, char))
            vocab.setdefault(current + char, len(vocab))
            current += char
    for token in _SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, additional_special_tokens=_SPECIAL_TOKENS[1:])
    tokenizer.chat_template = _CHAT_TEMPLATE
    tokenizer.model_max_length = MAX_SEQUENCE_LENGTH
    return tokenizer


def build_text_encoder(vocab_size: int, seed: int):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(seed)
    text = {
        "vocab_size": vocab_size,
        "hidden_size": TEXT_HIDDEN,
        "intermediate_size": 2 * TEXT_HIDDEN,
        "num_hidden_layers": TEXT_LAYERS,
        "num_attention_heads": TEXT_HEADS,
        "num_key_value_heads": 1,
        "max_position_embeddings": 1024,
        "bos_token_id": None,
        "eos_token_id": vocab_size - 1,
        "pad_token_id": None,
        "layer_types": ["full_attention"] * TEXT_LAYERS,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": MROPE_SECTION},
    }  # sums to head_dim / 2
    vision = {
        "depth": 1,
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_heads": 2,
        "out_hidden_size": TEXT_HIDDEN,
        "fullatt_block_indexes": [0],
    }
    return Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(text_config=text, vision_config=vision))


def build_vae(cfg: WorldModelConfig):
    from diffusers import AutoencoderKLWan

    torch.manual_seed(cfg.seed)
    return AutoencoderKLWan(
        base_dim=cfg.vae_base_dim,
        z_dim=16,
        dim_mult=[1, 2, 2, 2],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )


def build_transformer(cfg: WorldModelConfig):
    from diffusers import CosmosTransformer3DModel

    torch.manual_seed(cfg.seed)
    width = 32 * cfg.dit_heads
    return CosmosTransformer3DModel(
        in_channels=17,
        out_channels=16,
        num_attention_heads=cfg.dit_heads,
        attention_head_dim=32,
        num_layers=cfg.dit_layers,
        mlp_ratio=4.0,
        text_embed_dim=width,
        adaln_lora_dim=64,
        max_size=(32, 64, 64),
        patch_size=(1, 1, 1),
        rope_scale=(1.0, 3.0, 3.0),
        concat_padding_mask=True,
        extra_pos_embed_type=None,
        use_crossattn_projection=True,
        crossattn_proj_in_channels=TEXT_HIDDEN * TEXT_LAYERS,
        encoder_hidden_states_channels=width,
    )


def build_scheduler():
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(
        use_karras_sigmas=True, use_flow_sigmas=True, prediction_type="flow_prediction", sigma_max=200.0, sigma_min=0.01
    )


# -------------------------------------------------------------------------------------------------------- episodes


def _render_chunk(args) -> tuple[np.ndarray, list[str]]:
    family, seeds, num_frames, height, width = args
    world = DemoWorld(height=height, width=width, max_steps=num_frames - 1)
    episodes = [rollout_expert(world, family, seed) for seed in seeds]
    return np.stack([e.frames for e in episodes]), [e.prompt for e in episodes]


def render_episodes(
    family: str, seeds: list[int], *, num_frames: int, height: int, width: int, workers: int | None = None
) -> tuple[np.ndarray, list[str]]:
    """(frames uint8 (N, T, H, W, 3), prompts) of expert episodes, rendered on every CPU core."""
    workers = workers or os.cpu_count() or 1
    size = max(1, math.ceil(len(seeds) / (4 * workers)))
    chunks = [(family, seeds[i : i + size], num_frames, height, width) for i in range(0, len(seeds), size)]
    if workers == 1 or len(chunks) == 1:
        results = [_render_chunk(c) for c in chunks]
    else:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(_render_chunk, chunks))
    return np.concatenate([r[0] for r in results]), [p for r in results for p in r[1]]


def _training_seeds(cfg: WorldModelConfig) -> list[int]:
    return list(range(cfg.seed, cfg.seed + cfg.num_episodes))


def _to_video(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (B, T, H, W, 3) -> float (B, 3, T, H, W) in [-1, 1]."""
    return frames.permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0


# ------------------------------------------------------------------------------------------------------ VAE stage


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of videos in [-1, 1]."""
    mse = ((a.clamp(-1, 1) - b) ** 2).mean().item() / 4.0
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def _lr(step: int, total: int, warmup: int, floor: float = 0.1) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _reconstruct(vae, video: torch.Tensor, dtype) -> torch.Tensor:
    with torch.no_grad(), torch.autocast(video.device.type, dtype=dtype, enabled=video.device.type == "cuda"):
        return vae.decode(vae.encode(video).latent_dist.mean).sample.float()


def _mean_psnr(vae, video: torch.Tensor, dtype, batch: int = 16) -> float:
    """Mean reconstruction PSNR (dB) of clips (B, 3, T, H, W) in [-1, 1], `batch` clips at a time."""
    return float(
        np.mean(
            [
                _psnr(_reconstruct(vae, video[i : i + batch], dtype), video[i : i + batch])
                for i in range(0, len(video), batch)
            ]
        )
    )


def _vae_clips(cfg: WorldModelConfig, first_seed: int, count: int) -> dict[str, np.ndarray]:
    """{family: uint8 (N, T, H, W, 3)}: `count` expert episodes split evenly over cfg.vae_families, scene seeds
    first_seed + i (each family on the same scenes)."""
    families = cfg.vae_families.split(",")
    seeds = list(range(first_seed, first_seed + math.ceil(count / len(families))))
    size = {"num_frames": cfg.num_frames, "height": cfg.height, "width": cfg.width}
    return {family: render_episodes(family, seeds, **size)[0] for family in families}


def train_vae(cfg: WorldModelConfig) -> dict:
    """Reconstruction training of the VAE on clips of cfg.vae_families; saves it under work_dir/vae with its latent
    statistics in the config. Held-out reconstruction is measured per family."""
    device = torch.device(cfg.device)
    started = time.perf_counter()
    frames = torch.from_numpy(np.concatenate(list(_vae_clips(cfg, cfg.seed, cfg.num_episodes).values()))).to(device)
    held_by_family = {
        family: _to_video(torch.from_numpy(clips).to(device))
        for family, clips in _vae_clips(cfg, 2_000_000, 64 * len(cfg.vae_families.split(","))).items()
    }
    # the progress log's 16 clips, an equal share of every family
    held = torch.cat([v[: 16 // len(held_by_family)] for v in held_by_family.values()])
    logger.info("rendered %d episodes in %.1f s", len(frames), time.perf_counter() - started)
    table = torch.tensor([TABLE_RGB, TABLE_EDGE_RGB], device=device).float().view(2, 1, 3, 1, 1, 1) / 127.5 - 1.0

    vae = build_vae(cfg).to(device).train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_learning_rate, betas=(0.9, 0.99))
    generator = torch.Generator(device="cpu").manual_seed(cfg.seed)
    dtype = torch.bfloat16
    log, step, t0 = [], 0, time.perf_counter()
    for step in range(cfg.vae_steps):
        if cfg.time_limit_s is not None and time.perf_counter() - started > cfg.time_limit_s:
            logger.warning("VAE stage stopped by time_limit_s after %d steps", step)
            break
        for group in optimizer.param_groups:
            group["lr"] = cfg.vae_learning_rate * _lr(step, cfg.vae_steps, 100)
        index = torch.randint(0, len(frames), (cfg.vae_batch_size,), generator=generator).to(device)
        video = _to_video(frames[index])
        bare = ((video.unsqueeze(0) - table).abs().amax(dim=2) < 0.08).any(dim=0)  # table or edge pixels
        weight = 1.0 + cfg.vae_object_weight * (~bare).float().unsqueeze(1)
        with torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
            posterior = vae.encode(video).latent_dist
            decoded = vae.decode(posterior.sample()).sample
        loss = (weight * (decoded.float() - video) ** 2).mean() + cfg.vae_kl_weight * posterior.kl().float().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        if step % 250 == 0 or step == cfg.vae_steps - 1:
            vae.eval()
            psnr = _psnr(_reconstruct(vae, held, dtype), held)
            vae.train()
            log.append(
                {
                    "step": step,
                    "loss": round(loss.item(), 5),
                    "psnr_db": round(psnr, 2),
                    "elapsed_s": round(time.perf_counter() - t0, 1),
                }
            )
            logger.info("vae step %d loss %.5f held-out PSNR %.2f dB", step, loss.item(), psnr)
    steps_done = step + 1
    vae.eval()
    psnr_by_family = {family: round(_mean_psnr(vae, v, dtype), 2) for family, v in held_by_family.items()}
    psnr = float(np.mean(list(psnr_by_family.values())))
    means, stds = latent_statistics(vae, frames, dtype)
    vae.register_to_config(latents_mean=means, latents_std=stds)
    out = cfg.work_dir / VAE_DIR
    vae.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
    record = {
        "steps": steps_done,
        "seconds": round(time.perf_counter() - t0, 1),
        "heldout_psnr_db": round(psnr, 2),
        "heldout_psnr_db_by_family": psnr_by_family,
        "heldout_clips": sum(len(v) for v in held_by_family.values()),
        "log": log,
        "device": _device_name(device),
        "config": {k: v for k, v in config_to_dict(cfg).items() if k.startswith("vae_") or k in VAE_INPUTS},
    }
    write_text_atomic(out / "vae_training.json", json.dumps(record, indent=2))
    logger.info("VAE: %d steps, held-out PSNR %s dB -> %s", steps_done, psnr_by_family, out)
    return record


@torch.no_grad()
def latent_statistics(vae, frames: torch.Tensor, dtype, batch: int = 128) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the VAE's latent means over the training episodes."""
    total, total_sq, count = 0.0, 0.0, 0
    for i in range(0, len(frames), batch):
        with torch.autocast(frames.device.type, dtype=dtype, enabled=frames.device.type == "cuda"):
            mu = vae.encode(_to_video(frames[i : i + batch])).latent_dist.mean.float()
        total = total + mu.sum(dim=(0, 2, 3, 4)).double()
        total_sq = total_sq + (mu.double() ** 2).sum(dim=(0, 2, 3, 4))
        count += mu.numel() // mu.shape[1]
    mean = total / count
    std = (total_sq / count - mean**2).clamp_min(1e-12).sqrt()
    return [float(v) for v in mean], [float(v) for v in std]


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


# ------------------------------------------------------------------------------------------------------ DiT stage


def assemble_pipeline(cfg: WorldModelConfig, vae_dir: Path):
    """The untrained pipeline: the trained VAE, a fresh DiT, the seeded text encoder and the demo tokenizer."""
    from diffusers import AutoencoderKLWan, Cosmos2_5_PredictBasePipeline

    from cosmos_synth.safety import NoOpSafetyChecker

    tokenizer = build_tokenizer()
    vae = AutoencoderKLWan.from_pretrained(str(vae_dir), use_safetensors=True, dtype=torch.float32)
    return Cosmos2_5_PredictBasePipeline(
        text_encoder=build_text_encoder(len(tokenizer), cfg.seed),
        tokenizer=tokenizer,
        transformer=build_transformer(cfg),
        vae=vae,
        scheduler=build_scheduler(),
        safety_checker=NoOpSafetyChecker(),
    )


@torch.no_grad()
def write_latent_cache(pipe, frames: np.ndarray, prompts: list[str], out_dir: Path, device) -> Path:
    """The training episodes in the latent cache's layout (cosmos_synth.cache), one window per episode."""
    from safetensors.torch import save_file

    mean, inverse_std = pipe.latents_mean.to(device), pipe.latents_std.to(device)
    (out_dir / "latents").mkdir(parents=True, exist_ok=True)
    (out_dir / "prompts").mkdir(parents=True, exist_ok=True)
    prompt_files = {}
    for prompt in sorted(set(prompts)):
        path = out_dir / "prompts" / f"{len(prompt_files):04d}.safetensors"
        save_file({"prompt_embeds": pipe._get_prompt_embeds(prompt, device=device).to(torch.bfloat16).cpu()}, str(path))
        prompt_files[prompt] = path
    rows = []
    for i in range(0, len(frames), 256):
        video = _to_video(torch.from_numpy(frames[i : i + 256]).to(device))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            mu = pipe.vae.encode(video).latent_dist.mean.float()
        latents = ((mu - mean) * inverse_std).to(torch.bfloat16).cpu()
        for j in range(len(latents)):
            sample_id = f"episode_{i + j:06d}"
            path = out_dir / "latents" / f"{sample_id}.safetensors"
            save_file({"latents": latents[j : j + 1].contiguous()}, str(path))
            rows.append(
                {
                    "sample_id": sample_id,
                    "latents": str(path.resolve()),
                    "prompt": str(prompt_files[prompts[i + j]].resolve()),
                    "caption": prompts[i + j],
                    "key": "world-model",
                    "starts": [0],
                }
            )
    return write_jsonl(out_dir / MANIFEST, rows)


def dit_train_config(cfg: WorldModelConfig) -> TrainConfig:
    """The project's training config for the DiT: every parameter (adapter="full"), from the latent cache."""
    steps = cfg.dit_epochs * math.ceil(cfg.num_episodes / cfg.dit_batch_size)
    return TrainConfig(
        model="in-memory",
        revision=None,
        data_dir=cfg.work_dir / CACHE_DIR,
        out_dir=cfg.work_dir / DIT_DIR,
        adapter="full",
        num_frames=cfg.num_frames,
        num_epochs=cfg.dit_epochs,
        batch_size=cfg.dit_batch_size,
        learning_rate=cfg.dit_learning_rate,
        weight_decay=0.01,
        max_grad_norm=1.0,
        num_warmup_steps=min(200, steps // 10),
        num_training_steps=steps,
        f_min=0.1,
        f_max=1.0,
        cfg_dropout_prob=cfg.cfg_dropout_prob,
        cond_frame_probs={1: 0.8, 2: 0.2},
        checkpoint_every_epochs=cfg.dit_epochs,
        seed=cfg.seed,
        dtype="bfloat16" if cfg.device.startswith("cuda") else "float32",
        gradient_checkpointing=False,
        cpu=not cfg.device.startswith("cuda"),
        latent_cache=cfg.work_dir / CACHE_DIR,
    )


def train_dit(cfg: WorldModelConfig) -> dict:
    """Train the DiT from scratch on the latent cache of the training episodes; save the finished model."""
    from cosmos_synth.train import train

    device = torch.device(cfg.device)
    started = time.perf_counter()
    pipe = assemble_pipeline(cfg, cfg.work_dir / VAE_DIR).to(device)
    frames, prompts = render_episodes(
        PRETRAINING_FAMILY, _training_seeds(cfg), num_frames=cfg.num_frames, height=cfg.height, width=cfg.width
    )
    shutil.rmtree(cfg.work_dir / CACHE_DIR, ignore_errors=True)
    write_latent_cache(pipe, frames, prompts, cfg.work_dir / CACHE_DIR, device)
    logger.info("latent cache of %d episodes in %.1f s", len(frames), time.perf_counter() - started)
    train_cfg = dit_train_config(cfg)
    shutil.rmtree(train_cfg.out_dir, ignore_errors=True)  # a build starts from scratch, never from a stale run
    t0 = time.perf_counter()
    text_encoder = pipe.text_encoder  # train() releases the pipeline's text encoder once prompts are encoded
    result = train(train_cfg, pipe=pipe)
    seconds = time.perf_counter() - t0
    pipe.register_modules(text_encoder=text_encoder)  # back into model_index.json too
    pipe.transformer = (
        type(pipe.transformer).from_pretrained(str(train_cfg.out_dir / "transformer"), use_safetensors=True).to(device)
    )
    record = {
        "steps": result.num_steps,
        "final_loss": round(result.final_loss, 5),
        "seconds": round(seconds, 1),
        "device": _device_name(device),
        "train_config": config_to_dict(train_cfg),
    }
    save_model(pipe, cfg, record)
    return record


def check_model(cfg: WorldModelConfig, settings: list[tuple[str, int, int, float]]) -> list[dict]:
    """check_generation for each (family, episodes, num_steps, guidance_scale) on the saved model."""
    from cosmos_synth.models import load_pipeline

    pipe = load_pipeline(cfg.out_dir, dtype="float32", device=cfg.device)
    rows = []
    for family, episodes, steps, guidance in settings:
        rows.append(
            check_generation(pipe, cfg, family, episodes, num_steps=steps, guidance_scale=guidance, device=cfg.device)
        )
        logger.info("check %s", rows[-1])
    return rows


@torch.no_grad()
def check_generation(
    pipe,
    cfg: WorldModelConfig,
    family: str,
    num_episodes: int,
    *,
    num_steps: int,
    guidance_scale: float,
    device: str,
    seed_base: int = 1_000_000,
) -> dict:
    """Generate from held-out first frames of `family` (scene seeds seed_base + k) and judge the videos: a quick
    read of a model while it is being built (the evaluate stage is the full measurement)."""
    import cv2

    from cosmos_synth.config import GenerateConfig
    from cosmos_synth.demo_world.judge import judge, track_error
    from cosmos_synth.generate import Pair, generate_video

    world = DemoWorld(height=cfg.height, width=cfg.width, max_steps=cfg.num_frames - 1)
    counts = {"success": 0, "distractor": 0, "physics_ok": 0}
    errors, started = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        gen = GenerateConfig(
            model="in-memory",
            revision=None,
            pairs_dir=Path(tmp),
            out_dir=Path(tmp),
            height=cfg.height,
            width=cfg.width,
            num_frames=cfg.num_frames,
            num_steps=num_steps,
            guidance_scale=guidance_scale,
            seed=0,
            dtype="float32",
            device=device,
        )
        for k in range(num_episodes):
            episode = rollout_expert(world, family, seed_base + k)
            image = Path(tmp) / f"p{k}.png"
            cv2.imwrite(str(image), episode.frames[0][:, :, ::-1])
            embeds = pipe._get_prompt_embeds(episode.prompt, device=device)
            negative = torch.zeros_like(embeds) if guidance_scale > 1 else None
            frames = generate_video(
                pipe, gen, Pair(index=k, sample_id=f"p{k}", image=image, prompt=episode.prompt), embeds, negative
            )
            verdict = judge(frames, episode.task)
            for key in counts:
                counts[key] += bool(getattr(verdict, key))
            errors.append(track_error(verdict, episode.state))
    return {
        "family": family,
        "episodes": num_episodes,
        "num_steps": num_steps,
        "guidance_scale": guidance_scale,
        **{f"{k}_rate": v / num_episodes for k, v in counts.items()},
        "track_error": float(np.mean(errors)),
        "s_per_video": round((time.perf_counter() - started) / num_episodes, 3),
    }


def save_model(pipe, cfg: WorldModelConfig, dit_record: dict) -> Path:
    """save_pretrained (bfloat16 safetensors) into cfg.out_dir, through a temporary folder; the marker last."""
    out = Path(cfg.out_dir)
    with atomic_dir(out) as tmp:
        for name in ("transformer", "vae", "text_encoder"):
            getattr(pipe, name).to("cpu", torch.bfloat16)
        pipe.save_pretrained(tmp, safe_serialization=True)
        vae_record = json.loads((cfg.work_dir / VAE_DIR / "vae_training.json").read_text())
        dit_fields = {k: v for k, v in config_to_dict(cfg).items() if not k.startswith("vae_") and k != "time_limit_s"}
        marker = {
            "model": "cosmos-synth demo world model",
            "config": dit_fields,
            "vae": vae_record,
            "dit": {k: v for k, v in dit_record.items() if k != "train_config"},
            "dit_train_config": dit_record["train_config"],
        }
        (tmp / MODEL_MARKER).write_text(json.dumps(marker, indent=2, default=str) + "\n")
    logger.info("demo world model -> %s", out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["vae", "dit", "check"])
    parser.add_argument(
        "--check",
        action="append",
        default=[],
        metavar="FAMILY:EPISODES:STEPS:GUIDANCE",
        help="after the stage, generate and judge held-out episodes with these settings",
    )
    fields = {f.name: f for f in dataclasses.fields(WorldModelConfig)}
    for name, f in fields.items():
        kind = {"int": int, "float": float, "Path": Path, "str": str}.get(str(f.type).split(" ")[0], str)
        default = None if f.default is dataclasses.MISSING else f.default
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=float if "float" in str(f.type) else kind,
            default=default,
            required=f.default is dataclasses.MISSING,
        )
    args = vars(parser.parse_args(argv))
    stage, checks = args.pop("stage"), args.pop("check")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = WorldModelConfig(**{k: v for k, v in args.items()})
    if stage != "check":
        record = train_vae(cfg) if stage == "vae" else train_dit(cfg)
        logger.info("%s", json.dumps({k: v for k, v in record.items() if k not in ("log", "train_config")}))
    if checks:
        settings = [(f, int(e), int(s), float(g)) for f, e, s, g in (c.split(":") for c in checks)]
        rows = check_model(cfg, settings)
        write_jsonl(cfg.work_dir / "checks.jsonl", rows)


if __name__ == "__main__":
    main()
