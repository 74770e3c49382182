"""Generate: one video per (image .png, prompt .txt) pair, from architecture-invariant noise.

Each pair's initial latents are drawn with NumPy from its own seed (`seed + index`), so the same seed gives the
same noise on any GPU or CPU. Videos are written under a temporary name and renamed; a rerun skips pairs whose
video already exists and decodes, so an interrupted run resumes instead of starting over. A video longer than the
model's window (`num_frames > chunk_frames`) is a chain of chunks, each continuing the last (cosmos_synth.chain); a
killed run resumes it at its last finished chunk.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers.pipelines.cosmos.pipeline_cosmos2_5_predict import DEFAULT_NEGATIVE_PROMPT
from PIL import Image

from cosmos_synth.chain import (
    ChunkStore,
    chunk_fields,
    chunk_folder,
    is_chained,
    log_chunking,
    remove_chunks,
    sample_video,
)
from cosmos_synth.config import GenerateConfig, write_config
from cosmos_synth.encoding import embed_prompt
from cosmos_synth.files import file_sha256, read_jsonl, remove_stale_temporaries, write_jsonl
from cosmos_synth.fp8_attention import use_fp8_attention
from cosmos_synth.layout import MANIFEST, PREVIEWS_DIR, SHARDS_DIR, VIDEOS_DIR
from cosmos_synth.models import (
    ADAPTER_FILE,
    load_full_transformer,
    load_pipeline,
    model_fingerprint,
    trained_weights_file,
)
from cosmos_synth.preview import VideoPreviews, write_video_previews
from cosmos_synth.progress import Progress, ProgressReporter
from cosmos_synth.results import StageResult
from cosmos_synth.safe_weights import validate_adapter_file
from cosmos_synth.speed import compile_blocks, set_attention_backend, use_fp8_matmuls
from cosmos_synth.validate import Mode, Quarantine, check_pairs, read_png_rgb, writing
from cosmos_synth.video import read_video, write_video

logger = logging.getLogger(__name__)

PROMPT_BATCH = 16  # prompts per text-encoder pass when encoding a shard's prompts up front


@dataclass(frozen=True)
class Pair:
    index: int  # position in the sorted pair list: the sample's seed is cfg.seed + index
    sample_id: str  # file stem shared by the image and the prompt
    image: Path
    prompt: str


@dataclass(frozen=True, kw_only=True)
class GenerateResult(StageResult):  # manifest: out_dir / manifest.jsonl (a shard's: shards/<shard>.jsonl)
    num_videos: int
    num_skipped: int  # pairs whose video already existed and verified
    quarantined: tuple[dict, ...] = ()  # lenient mode: the bad pairs left out, {"sample_id", "file", "reason"}
    previews: VideoPreviews | None = None  # contact sheet and animated preview of the videos (None: no videos)

    def summary_rows(self) -> list[dict]:
        return [
            {"sample_id": r["sample_id"], "seed": r["seed"], "video": Path(r["video"]).name, "prompt": r["prompt"][:60]}
            for r in read_jsonl(self.manifest)
        ]

    def outputs(self) -> dict[str, Path]:
        previews = (
            {"contact_sheet": self.previews.contact_sheet, "preview": self.previews.animation} if self.previews else {}
        )
        return {"videos": self.out_dir / VIDEOS_DIR, **previews}


def list_pairs(pairs_dir: Path) -> list[Pair]:
    """Every `<id>.png` with its `<id>.txt`, sorted by id; the first bad pair raises, naming the file and the fix."""
    return list_pairs_checked(pairs_dir, "strict")[0]


def list_pairs_checked(pairs_dir: Path, mode: Mode = "strict") -> tuple[list[Pair], list[dict]]:
    """(good pairs sorted by id, quarantined pairs) of `pairs_dir`; see cosmos_synth.validate.check_pairs.

    strict: the first bad pair raises a ValueError naming the file and the fix (the list is then always empty).
    lenient: each bad pair is skipped and listed as {"sample_id", "file", "reason"}; write them with
    `Quarantine(mode, entries).write(out_dir)`. A pair's index (its seed offset) counts the skipped ones too.
    """
    quarantine = Quarantine(mode)
    pairs = [
        Pair(index=index, sample_id=stem, image=image, prompt=prompt)
        for index, stem, image, prompt in check_pairs(pairs_dir, quarantine)
    ]
    return pairs, quarantine.entries


def video_is_complete(path: Path, num_frames: int) -> bool:
    """True when `path` decodes to exactly `num_frames` frames (a finished earlier output)."""
    if not path.is_file():
        return False
    try:
        return read_video(path)[0].shape[0] == num_frames
    except ValueError:
        return False


def load_image(path: Path) -> Image.Image:
    """The pair's PNG as 8-bit RGB (RGBA, greyscale, 16-bit converted); a bad file raises naming it and the fix."""
    return read_png_rgb(path)[0]


def prepare_pipeline(cfg: GenerateConfig, base=None):
    """Load the model (or take `base`, an already-built pipeline), fuse the adapter into the DiT, apply speed knobs.

    On CUDA with `stream_text_encoder`, the 8B text encoder stays in host memory and its layers are streamed to the
    GPU while prompts are encoded, so it never sits on the GPU next to the DiT.
    """
    streaming = cfg.stream_text_encoder and cfg.device.startswith("cuda")
    pipe = base or load_pipeline(
        cfg.model, cfg.revision, dtype=cfg.dtype, device="cpu" if streaming else cfg.device, guardrail=cfg.guardrail
    )
    if streaming:
        for name in ("transformer", "vae", "safety_checker"):
            getattr(pipe, name).to(cfg.device)
    fuse_adapter(pipe, cfg.adapter)  # before the text encoder is hooked (fuse_adapter says why)
    if streaming:
        stream_text_encoder(pipe, torch.device(cfg.device))
    set_attention_backend(pipe.transformer, cfg.attention_backend)
    encode_conditioning_frames_only(pipe)
    if cfg.fp8_matmuls:
        pipe.transformer.requires_grad_(False)  # generation never trains; FP8 layers compute no weight gradient
        use_fp8_matmuls(pipe.transformer)
    if cfg.fp8_attention:
        use_fp8_attention(pipe.transformer)
    return pipe


def hooked_components(pipe) -> list[str]:
    """Names of the pipeline's modules that carry accelerate hooks (CPU offloading, device alignment)."""
    return [
        name
        for name, component in pipe.components.items()
        if isinstance(component, torch.nn.Module) and any(hasattr(m, "_hf_hook") for m in component.modules())
    ]


def fuse_adapter(pipe, adapter: Path | str | None) -> None:
    """Fuse a LoRA/DoRA adapter folder into the DiT, or swap in a fully fine-tuned DiT; None: nothing.

    It must run before any accelerate hook is on the pipeline. diffusers' load_lora_weights, finding a hooked
    component (the streamed text encoder), removes the hooks and offloads the whole pipeline sequentially; the DiT
    then computes from a copy of its weights taken before fuse_lora, so every video would be the base model's.
    A hooked pipeline is refused instead."""
    if adapter is None:
        return
    hooked = hooked_components(pipe)
    if hooked:
        raise RuntimeError(
            f"cannot fuse adapter {adapter}: pipeline components {hooked} already carry accelerate hooks, and "
            "diffusers would offload the whole pipeline and drop the fused weights; fuse before offloading."
        )
    if trained_weights_file(adapter).name == ADAPTER_FILE:
        validate_adapter_file(Path(adapter) / ADAPTER_FILE, pipe.transformer)  # this architecture, its rank
        pipe.load_lora_weights(str(adapter), weight_name=ADAPTER_FILE)
        pipe.fuse_lora(lora_scale=1.0)
    else:  # a full fine-tune: its whole DiT replaces the base one
        load_full_transformer(pipe, Path(adapter))


def stream_text_encoder(pipe, device: torch.device) -> None:
    """Keep the text encoder in host memory and stream its layers to `device` while prompts are encoded."""
    from accelerate import cpu_offload

    pipe.text_encoder.to("cpu")
    cpu_offload(pipe.text_encoder, execution_device=device)


def encode_conditioning_frames_only(pipe) -> None:
    """Have the pipeline VAE-encode only the pixel frames behind its conditioning latent frames (in place, once).

    Given an image, the pipeline builds a num_frames video (the image, then black frames; given a video, its last 1
    or 5 frames, then copies of the last one) and VAE-encodes all of it, yet uses only the conditioning latent
    frames (1 or 2): the condition mask is zero on the other frames. The Wan VAE is causal (latent frame 0 comes
    from pixel frame 0 alone, each later latent frame from 4 more pixel frames), so encoding just those frames gives
    the same conditioning latents and saves a full-video VAE encode per video (per chunk of a long one). The other
    latent frames are filled with zeros: the pipeline multiplies them by the zero mask, so they change nothing.
    """
    if getattr(pipe, "_encodes_conditioning_frames_only", False):
        return
    prepare = pipe.prepare_latents

    def prepare_latents(*args, video=None, num_frames_in=0, **kwargs):
        if video is not None and num_frames_in > 0:
            video = video[:, :, : 4 * ((num_frames_in - 1) // 4) + 1]
        latents, cond_latents, cond_mask, cond_indicator = prepare(
            *args, video=video, num_frames_in=num_frames_in, **kwargs
        )
        missing = latents.shape[2] - cond_latents.shape[2]
        if missing > 0:
            padding = cond_latents.new_zeros((*cond_latents.shape[:2], missing, *cond_latents.shape[3:]))
            cond_latents = torch.cat([cond_latents, padding], dim=2)
        return latents, cond_latents, cond_mask, cond_indicator

    pipe.prepare_latents = prepare_latents
    pipe._encodes_conditioning_frames_only = True


@torch.no_grad()
def encode_prompts(pipe, cfg: GenerateConfig, pairs: list[Pair]) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """Every pair's prompt embedding and the (shared) negative prompt's, computed once, as the pipeline would.

    Prompts go through the text encoder PROMPT_BATCH at a time (with a streamed encoder, each batch is one pass of
    its weights over PCIe). The guardrail's text check runs here, since the pipeline only checks prompts it encodes.
    """
    device = torch.device(cfg.device)
    for pair in pairs:
        if not pipe.safety_checker.check_text_safety(pair.prompt):
            raise ValueError(
                f"The guardrail rejected the prompt in {pair.image.with_suffix('.txt')}; "
                "rewrite it within the NVIDIA Open Model License."
            )
    positive = {}
    for start in range(0, len(pairs), PROMPT_BATCH):
        batch = pairs[start : start + PROMPT_BATCH]
        embeds, _ = pipe.encode_prompt(
            prompt=[p.prompt for p in batch], do_classifier_free_guidance=False, device=device
        )
        positive.update({p.sample_id: embeds[i : i + 1] for i, p in enumerate(batch)})
    negative = None
    if cfg.guidance_scale > 1.0:  # the pipeline's built-in negative prompt, the same for every video
        negative = embed_prompt(pipe, DEFAULT_NEGATIVE_PROMPT, device)
    return positive, negative


def release_text_encoder(pipe) -> None:
    """Drop the text encoder before denoising: generation never needs it again."""
    pipe.text_encoder = None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def generate_video(
    pipe, cfg: GenerateConfig, pair: Pair, prompt_embeds=None, negative_embeds=None, store: ChunkStore | None = None
) -> np.ndarray:
    """uint8 (T, H, W, 3) frames for one pair (from precomputed embeddings when given, else from the prompt): one
    pipeline call, or chained chunks past cfg.chunk_frames (cosmos_synth.chain; resumed from `store` when given)."""
    text = (
        {"prompt": pair.prompt}
        if prompt_embeds is None
        else {"prompt_embeds": prompt_embeds, "negative_prompt_embeds": negative_embeds}
    )
    return sample_video(pipe, cfg, seed=cfg.seed + pair.index, image=load_image(pair.image), text=text, store=store)


def generate_videos(cfg: GenerateConfig, pipe=None, progress: Progress | None = None) -> GenerateResult:
    """Generate one video per pair in cfg.pairs_dir; skip pairs whose outputs already verify.

    `pipe` (optional) is a base pipeline to use instead of loading cfg.model; cfg.adapter is fused into it.
    `progress` gets the videos done (s/video, time left). Previews of the videos are written at the end
    (previews/, or previews/<shard>/ for a shard: see cosmos_synth.preview).

    A pair counts as done when the manifest already holds the identical row (same seed, prompt, image, adapter
    contents, model and settings) and its video decodes to num_frames frames. The manifest is rewritten after
    every video, so a killed run loses at most the video in flight.
    """
    pairs, rejected = list_pairs_checked(cfg.pairs_dir, cfg.mode)
    Quarantine(cfg.mode, rejected).write(cfg.out_dir)  # lenient: the bad pairs, each with its reason
    if cfg.sample_ids is not None:
        unknown = sorted(set(cfg.sample_ids) - {p.sample_id for p in pairs})
        if unknown:
            raise ValueError(f"sample_ids {unknown[:5]} are not pairs in {cfg.pairs_dir}; shard from list_pairs().")
        chosen = set(cfg.sample_ids)
        pairs = [p for p in pairs if p.sample_id in chosen]  # seeds keep their global index
    videos_dir, manifest = cfg.out_dir / VIDEOS_DIR, manifest_path(cfg)
    write_config(cfg, cfg.out_dir, f"generate-{cfg.shard}" if cfg.shard else "generate")
    adapter_digest = file_digest(trained_weights_file(cfg.adapter)) if cfg.adapter else None
    model = model_fingerprint(cfg.model, cfg.revision)  # once: for a local folder it walks every file
    wanted = {p.sample_id: manifest_row(cfg, p, videos_dir, adapter_digest, model) for p in pairs}
    previous = {r["sample_id"]: r for r in read_jsonl(manifest)} if manifest.is_file() else {}
    done = {
        sid: row
        for sid, row in wanted.items()
        if previous.get(sid) == row and video_is_complete(Path(row["video"]), cfg.num_frames)
    }
    pending = [p for p in pairs if p.sample_id not in done]
    for pair in pending:  # temporary files of a killed earlier run; only this run's samples (shards share the folder)
        remove_stale_temporaries(videos_dir / f"{pair.sample_id}.mp4")
    for sample_id in done:  # chunks of a run killed after recording its video, before removing them
        remove_chunks(chunk_folder(videos_dir, sample_id))
    log_chunking(cfg)
    if pending:
        pipe = prepare_pipeline(cfg, base=pipe)
        embeds, negative = encode_prompts(pipe, cfg, pending)
        release_text_encoder(pipe)
        if cfg.compile:
            compile_blocks(pipe.transformer)  # once per worker: every later video reuses the compiled blocks
    report = ProgressReporter(
        progress, "generate", total=len(pairs), unit="video", done=len(pairs) - len(pending)
    ).start()
    for number, pair in enumerate(pending, start=1):
        store = (
            ChunkStore(chunk_folder(videos_dir, pair.sample_id), wanted[pair.sample_id]) if is_chained(cfg) else None
        )
        frames = generate_video(pipe, cfg, pair, embeds[pair.sample_id], negative, store=store)
        with writing(videos_dir / f"{pair.sample_id}.mp4"):  # disk full: an error naming the file, nothing partial
            write_video(frames, videos_dir / f"{pair.sample_id}.mp4", fps=cfg.fps)
        done[pair.sample_id] = wanted[pair.sample_id]
        write_jsonl(manifest, [done[p.sample_id] for p in pairs if p.sample_id in done])
        remove_chunks(chunk_folder(videos_dir, pair.sample_id))  # the video and its row are written
        logger.info("video %d/%d -> %s (seed %d)", number, len(pending), pair.sample_id, cfg.seed + pair.index)
        report.advance()
    rows = [done[p.sample_id] for p in pairs]
    write_jsonl(manifest, rows)
    previews = write_video_previews(rows, cfg.out_dir / PREVIEWS_DIR / (cfg.shard or ""))
    logger.info("%d videos (%d generated now) in %s", len(pairs), len(pending), videos_dir)
    return GenerateResult(
        out_dir=cfg.out_dir,
        manifest=manifest,
        num_videos=len(pairs),
        num_skipped=len(pairs) - len(pending),
        quarantined=tuple(rejected),
        previews=previews,
    )


def manifest_path(cfg: GenerateConfig) -> Path:
    """manifest.jsonl, or shards/<shard>.jsonl for one shard of a fanned-out run."""
    return cfg.out_dir / SHARDS_DIR / f"{cfg.shard}.jsonl" if cfg.shard else cfg.out_dir / MANIFEST


def split_shards(sample_ids: list[str], num_shards: int) -> dict[str, list[str]]:
    """Contiguous, near-equal shards named shard-000, shard-001, ... (empty shards are dropped)."""
    if num_shards < 1:
        raise ValueError(f"num_shards={num_shards} must be >= 1.")
    size = -(-len(sample_ids) // num_shards)
    chunks = [sample_ids[i : i + size] for i in range(0, len(sample_ids), size)] if sample_ids else []
    return {f"shard-{i:03d}": chunk for i, chunk in enumerate(chunks)}


def merge_shards(cfg: GenerateConfig, shards: dict[str, list[str]]) -> GenerateResult:
    """Merge the shards' manifests into manifest.jsonl, checking every pair was generated exactly once."""
    pairs = list_pairs(cfg.pairs_dir)
    rows: dict[str, dict] = {}
    for shard, ids in shards.items():
        path = manifest_path(dataclasses.replace(cfg, shard=shard))
        shard_rows = read_jsonl(path)
        got = [r["sample_id"] for r in shard_rows]
        if sorted(got) != sorted(ids):
            raise ValueError(
                f"shard {shard} ({path}) holds {sorted(got)[:5]}..., expected {sorted(ids)[:5]}...; rerun the shard."
            )
        for row in shard_rows:
            if row["sample_id"] in rows:
                raise ValueError(f"sample {row['sample_id']} appears in two shards; shards must not overlap.")
            if not video_is_complete(Path(row["video"]), cfg.num_frames):
                raise ValueError(f"video {row['video']} of shard {shard} does not verify; rerun the shard.")
            rows[row["sample_id"]] = row
    missing = [p.sample_id for p in pairs if p.sample_id not in rows]
    if missing:
        raise ValueError(f"pairs {missing[:5]} are in no shard; split every pair of {cfg.pairs_dir} into shards.")
    merged = [rows[p.sample_id] for p in pairs]
    manifest = write_jsonl(cfg.out_dir / MANIFEST, merged)
    return GenerateResult(
        out_dir=cfg.out_dir,
        manifest=manifest,
        num_videos=len(pairs),
        num_skipped=0,
        previews=write_video_previews(merged, cfg.out_dir / PREVIEWS_DIR),
    )


def file_digest(path: Path) -> str:
    """sha256 of a file (identifies adapter contents, not just its path)."""
    if not path.is_file():
        raise ValueError(f"adapter file {path} does not exist; point adapter at a training out_dir.")
    return file_sha256(path)


def manifest_row(cfg: GenerateConfig, pair: Pair, videos_dir: Path, adapter_digest: str | None, model: str) -> dict:
    """Everything that determines the video, plus where it is (`model`: the model's fingerprint). The FP8 options
    change the pixels, so each is recorded when on, and a long video's chunking when chained (each left out
    otherwise, so manifests from before the options still match)."""
    return {
        "sample_id": pair.sample_id,
        "seed": cfg.seed + pair.index,
        "prompt": pair.prompt,
        "image": str(pair.image.resolve()),
        "video": str((videos_dir / f"{pair.sample_id}.mp4").resolve()),
        "adapter": str(Path(cfg.adapter).resolve()) if cfg.adapter else None,
        "adapter_sha256": adapter_digest,
        "model": model,
        "num_frames": cfg.num_frames,
        "height": cfg.height,
        "width": cfg.width,
        "fps": cfg.fps,
        "num_steps": cfg.num_steps,
        "guidance_scale": cfg.guidance_scale,
        **{name: True for name in ("fp8_matmuls", "fp8_attention") if getattr(cfg, name)},
        **chunk_fields(cfg),
    }
