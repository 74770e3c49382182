"""LoRA / DoRA / full fine-tuning of the Cosmos DiT: one readable loop, run under `accelerate launch`.

`python -m cosmos_synth.train <out_dir>/train_config.json` is what :func:`cosmos_synth.launch.launch_training`
starts (one process per GPU, or one CPU process). The loop follows the reference recipe (docs/recipe.md): frozen
base weights, adapters on the six attention/MLP projections in float32, AdamW with a linear warm-up/decay schedule
bounded by f_min/f_max, the flow-matching loss of :mod:`cosmos_synth.loss`, accelerate checkpoints every
`checkpoint_every_epochs`, and a final adapter in diffusers format (`pytorch_lora_weights.safetensors`).
With `adapter="full"` every DiT parameter trains instead (in float32, under bf16 autocast on GPUs), with the same
loss, optimizer and checkpoints, and the whole DiT is saved under `transformer/`. `batch_size` clips make one step.
A run restarted on the same `out_dir` resumes from its latest checkpoint.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from cosmos_synth.cache import load_cached, pick_window
from cosmos_synth.config import TrainConfig, config_to_dict, load_config
from cosmos_synth.encoding import embed_captions, encode_video
from cosmos_synth.files import read_jsonl, write_text_atomic
from cosmos_synth.layout import CHECKPOINTS_DIR, LOSS_CURVE, LOSS_LOG, MANIFEST, RESULT_FILE
from cosmos_synth.loss import build_flow_inputs, masked_velocity_loss, predict_velocity, sample_sigma
from cosmos_synth.models import ADAPTER_FILE, FULL_DIR, load_pipeline, trained_weights_file
from cosmos_synth.preprocess import load_clip, sample_window
from cosmos_synth.results import StageResult
from cosmos_synth.speed import checkpoint_blocks, compile_blocks, set_attention_backend, use_fp8_matmuls
from cosmos_synth.tracking import init_trackers, log_with, peak_memory_gib

logger = logging.getLogger("cosmos_synth.train")  # not __name__: run as `-m cosmos_synth.train`, that is "__main__"

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"  # train.log; launch.CHILD_LINE parses it


@dataclass(frozen=True, kw_only=True)
class TrainResult(StageResult):  # no manifest: the stage's output is the trained weights
    adapter_dir: Path  # what generate's `adapter` takes: the training out_dir
    adapter_file: Path  # the adapter file (LoRA/DoRA) or the full fine-tune's DiT weights
    num_steps: int
    final_loss: float
    peak_gib: float | None = None  # the loop's peak GPU memory (None on CPU)

    @property
    def loss_curve(self) -> Path:
        return self.out_dir / LOSS_CURVE

    @classmethod
    def read(cls, out_dir: Path) -> TrainResult:
        """The result a finished run recorded in out_dir/train_result.json."""
        record = json.loads((out_dir / RESULT_FILE).read_text())
        return cls(
            out_dir=out_dir,
            adapter_dir=out_dir,
            adapter_file=trained_weights_file(out_dir),
            num_steps=record["num_steps"],
            final_loss=record["final_loss"],
            peak_gib=record.get("peak_gib"),
        )

    def summary_rows(self) -> list[dict]:
        """About 20 rows of the loss log whatever the run length, numbers rounded for reading."""
        losses = read_jsonl(self.out_dir / LOSS_LOG) if (self.out_dir / LOSS_LOG).is_file() else []
        every = max(1, len(losses) // 20)
        rows = [
            {"step": r["step"], "epoch": r["epoch"], "loss": float(f"{r['loss']:.4g}"), "lr": float(f"{r['lr']:.3g}")}
            for r in losses[::every]
        ]
        return rows or [{"step": self.num_steps, "epoch": None, "loss": float(f"{self.final_loss:.4g}"), "lr": None}]

    def outputs(self) -> dict[str, Path]:
        return {"adapter": self.adapter_file, "loss_curve": self.loss_curve}


def add_adapter(transformer, cfg: TrainConfig) -> list[torch.nn.Parameter]:
    """Freeze the DiT, attach LoRA (or DoRA) to cfg.target_modules, keep adapter weights in float32; for
    adapter="full", make every parameter trainable, in float32."""
    from diffusers.training_utils import cast_training_params
    from peft import LoraConfig

    if cfg.adapter == "full":
        transformer.to(torch.float32).requires_grad_(True)
        return list(transformer.parameters())
    transformer.requires_grad_(False)
    transformer.add_adapter(
        LoraConfig(
            r=cfg.rank,
            lora_alpha=cfg.alpha,
            target_modules=list(cfg.target_modules),
            init_lora_weights=True,
            use_dora=cfg.adapter == "dora",
        )
    )
    cast_training_params(transformer, dtype=torch.float32)
    return [p for p in transformer.parameters() if p.requires_grad]


def save_adapter(transformer, out_dir: Path) -> Path:
    """Write the adapter in diffusers format, with its peft config as metadata (rank, alpha, DoRA); a fully
    fine-tuned DiT (no peft config) is saved whole under out_dir/transformer/ (safetensors)."""
    if not getattr(transformer, "peft_config", None):
        transformer.save_pretrained(out_dir / FULL_DIR, safe_serialization=True)
        return out_dir / FULL_DIR
    from diffusers import Cosmos2_5_PredictBasePipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(transformer))
    Cosmos2_5_PredictBasePipeline.save_lora_weights(
        out_dir,
        transformer_lora_layers=layers,
        weight_name=ADAPTER_FILE,
        safe_serialization=True,
        transformer_lora_adapter_metadata=transformer.peft_config["default"].to_dict(),
    )
    return out_dir / ADAPTER_FILE


def draw_num_cond_frames(probs: dict[int, float], generator: torch.Generator) -> int:
    keys = sorted(probs)
    index = torch.multinomial(torch.tensor([probs[k] for k in keys]), 1, generator=generator).item()
    return keys[index]


def draw_flow_noise(cfg: TrainConfig, clean_shape, generator: torch.Generator):
    """(noise, sigma, num_cond_latent_frames, drop_prompt) for one sample, from the loop's generator."""
    drop_prompt = torch.rand((), generator=generator).item() < cfg.cfg_dropout_prob
    noise = torch.randn(clean_shape, generator=generator)
    sigma = sample_sigma(1, generator=generator)
    return noise, sigma, draw_num_cond_frames(cfg.cond_frame_probs, generator), drop_prompt


def flow_loss(
    transformer,
    cfg: TrainConfig,
    clean: torch.Tensor,
    prompt_embeds: torch.Tensor,
    noise,
    sigma,
    num_cond: list[int],
    drop_prompt: list[bool],
    *,
    dtype: torch.dtype,
) -> torch.Tensor:
    """The reference loss for a batch of clean latents: CFG dropout, noised inputs, DiT, masked velocity MSE."""
    device = prompt_embeds.device
    keep = torch.tensor([not d for d in drop_prompt], device=device, dtype=prompt_embeds.dtype)
    prompt_embeds = prompt_embeds * keep.view(-1, 1, 1)  # classifier-free guidance dropout: zeroed embeddings
    inputs = build_flow_inputs(
        clean.to(device), noise.to(device), sigma.to(device), num_cond, cond_timestep=cfg.cond_frame_timestep
    )
    return masked_velocity_loss(predict_velocity(transformer, inputs, prompt_embeds, dtype=dtype), inputs)


def training_step(
    pipe, transformer, cfg: TrainConfig, batch: list[dict], generator: torch.Generator, device
) -> torch.Tensor:
    """The loss for a batch of clips: clean latents (cached window, or window → VAE) → flow loss. Each clip draws
    its window, noise, sigma, conditioning frames and CFG dropout in turn from `generator`."""
    clean, noise, sigma, num_cond, drop = [], [], [], [], []
    for sample in batch:
        if "latents" in sample:  # latent cache: a cached window, chosen at random per epoch
            latents = pick_window(sample["latents"], generator).float()
        else:
            latents = encode_video(pipe, sample_window(sample["frames"], cfg.num_frames, generator).unsqueeze(0))
        draw = draw_flow_noise(cfg, latents.shape, generator)
        for values, value in zip((clean, noise, sigma, num_cond, drop), (latents, *draw), strict=True):
            values.append(value)
    embeds = torch.cat([s["prompt_embeds"] for s in batch]).to(device)
    return flow_loss(
        transformer,
        cfg,
        torch.cat(clean),
        embeds,
        torch.cat(noise),
        torch.cat(sigma),
        num_cond,
        drop,
        dtype=pipe.transformer.dtype,
    )


def load_samples(cfg: TrainConfig, pipe, device) -> list[dict]:
    """Every clip with what a step needs: cached latents + embeddings, or frames + embeddings encoded now."""
    if cfg.latent_cache is not None:
        rows, prompts = read_jsonl(cfg.latent_cache / MANIFEST), {}
        samples = []
        for row in rows:  # clips that share a caption share one embedding tensor
            latents, embeds = load_cached(row, prompts.get(row["prompt"]))
            prompts[row["prompt"]] = embeds
            samples.append({"latents": latents, "prompt_embeds": embeds, "sample_id": row["sample_id"]})
        return samples
    clips = read_jsonl(cfg.data_dir / MANIFEST)
    embeds = embed_captions(pipe, [c["caption"] for c in clips], device)
    return [
        {"sample_id": c["sample_id"], "frames": load_clip(Path(c["clip"])), "prompt_embeds": embeds[c["caption"]]}
        for c in clips
    ]


def latest_checkpoint(out_dir: Path) -> Path | None:
    checkpoints = sorted((out_dir / CHECKPOINTS_DIR).glob("epoch_*"))
    complete = [c for c in checkpoints if (c / "DONE").is_file()]
    return complete[-1] if complete else None


def prepare_training(cfg: TrainConfig, pipe, device):
    """The pipeline (loaded unless given), its samples, and the DiT with adapter and speed settings applied."""
    if pipe is None:
        skip = ("text_encoder", "tokenizer") if cfg.latent_cache is not None else ()
        pipe = load_pipeline(cfg.model, cfg.revision, dtype=cfg.dtype, device=str(device), guardrail=False, skip=skip)
    samples = load_samples(cfg, pipe, device)
    pipe.text_encoder = None  # released: training never needs it again
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()  # peak_gib below is the loop's, not the prompt encoding's
    transformer = pipe.transformer
    params = add_adapter(transformer, cfg)
    set_attention_backend(transformer, cfg.attention_backend)
    if cfg.fp8_matmuls:
        use_fp8_matmuls(transformer)
    if cfg.gradient_checkpointing:
        checkpoint_blocks(transformer, cfg.checkpoint_layers, policy=cfg.checkpoint_policy)
    if cfg.compile:
        compile_blocks(transformer, activation_memory_budget=cfg.activation_memory_budget)
    return pipe, transformer, params, samples


def train(cfg: TrainConfig, pipe=None) -> TrainResult:
    """Run the loop; return (and write) the result record. Rank 0 writes every file.

    `pipe` (optional) is an already-built pipeline to train instead of loading cfg.model (benchmarks build
    full-size architectures in memory this way); its transformer gets the adapter.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from diffusers.optimization import get_linear_schedule_with_warmup

    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    mixed = "bf16" if cfg.dtype == "bfloat16" and not cfg.cpu else "no"
    accelerator = Accelerator(
        mixed_precision=mixed, cpu=cfg.cpu, project_dir=str(cfg.out_dir), log_with=log_with(cfg.report_to)
    )
    set_seed(cfg.seed)
    torch.backends.cuda.matmul.allow_tf32 = True  # as the reference: tf32 for any float32 matmul on GPU
    logger.info("%s", str(accelerator.state).replace("\n", "; "))  # distributed type, processes, backend
    pipe, transformer, params, samples = prepare_training(cfg, pipe, accelerator.device)
    fused = accelerator.device.type == "cuda"  # one kernel for the whole AdamW update
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay, fused=fused)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, cfg.num_warmup_steps, cfg.num_training_steps, f_min=cfg.f_min, f_max=cfg.f_max
    )
    transformer, optimizer, scheduler = accelerator.prepare(transformer, optimizer, scheduler)
    start_epoch, step = resume_if_possible(accelerator, cfg.out_dir)
    init_trackers(
        accelerator,
        cfg.report_to,
        cfg.out_dir,
        run_name=cfg.out_dir.resolve().parent.name,
        config=config_to_dict(cfg),
        purge_step=step + 1,
    )
    per_process = math.ceil(len(samples) / accelerator.num_processes)  # epoch_order's padded count
    num_steps = cfg.num_epochs * math.ceil(per_process / cfg.batch_size)
    logger.info("training %d steps: %d epochs of %d clips", num_steps, cfg.num_epochs, len(samples))

    loss_value = math.nan
    for epoch in range(start_epoch, cfg.num_epochs):
        epoch_losses = []
        generator = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch * 1009 + accelerator.process_index)
        order = epoch_order(len(samples), cfg.seed + epoch, accelerator.process_index, accelerator.num_processes)
        for first in range(0, len(order), cfg.batch_size):
            batch, started = [samples[i] for i in order[first : first + cfg.batch_size]], time.perf_counter()
            with accelerator.accumulate(transformer):
                loss = training_step(pipe, transformer, cfg, batch, generator, accelerator.device)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"loss is {loss.item()} at epoch {epoch}, step {step}, clips "
                        f"{[s['sample_id'] for s in batch]}; lower learning_rate or check the "
                        f"data."
                    )
                accelerator.backward(loss)
                grad_norm = accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            step += 1
            loss_value = loss.item()  # a CPU-GPU sync point; cheap next to a DiT step, and it makes step_s honest
            epoch_losses.append(loss_value)
            if accelerator.is_main_process:
                log_step(
                    accelerator,
                    cfg.out_dir,
                    {
                        "epoch": epoch,
                        "step": step,
                        "num_steps": num_steps,
                        "loss": loss_value,
                        "lr": scheduler.get_last_lr()[0],
                        "grad_norm": float(grad_norm) if grad_norm is not None else None,
                        "step_s": round(time.perf_counter() - started, 4),
                        **peak_memory_gib(accelerator.device),
                    },
                )
        logger.info(
            "epoch %d/%d: step %d/%d, mean loss %.5f",
            epoch + 1,
            cfg.num_epochs,
            step,
            num_steps,
            sum(epoch_losses) / len(epoch_losses) if epoch_losses else math.nan,
        )
        if (epoch + 1) % cfg.checkpoint_every_epochs == 0 or epoch + 1 == cfg.num_epochs:
            save_checkpoint(accelerator, cfg.out_dir, epoch + 1, step)

    peak_gib = round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None
    record = {
        "num_steps": step,
        "final_loss": loss_value,
        "adapter_dir": str(cfg.out_dir.resolve()),
        "peak_gib": peak_gib,
    }
    if accelerator.is_main_process:
        save_adapter(accelerator.unwrap_model(transformer), cfg.out_dir)
        write_text_atomic(cfg.out_dir / RESULT_FILE, json.dumps(record, indent=2))
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return TrainResult(
        out_dir=cfg.out_dir,
        adapter_dir=cfg.out_dir,
        adapter_file=trained_weights_file(cfg.out_dir),
        num_steps=step,
        final_loss=loss_value,
        peak_gib=peak_gib,
    )


def epoch_order(num_samples: int, seed: int, rank: int, world: int) -> list[int]:
    """This process's clips for one epoch: every world-th clip of a seeded shuffle, the shuffle padded with its own
    first clips so every process takes the same number of steps (DDP all-reduces each step; unequal counts hang)."""
    order = torch.randperm(num_samples, generator=torch.Generator().manual_seed(seed)).tolist()
    order += order[: (-len(order)) % world]
    return order[rank::world]


def log_step(accelerator, out_dir: Path, row: dict) -> None:
    """One step's row in loss.jsonl (which launch.py follows for progress) and its scalars for the trackers."""
    with (out_dir / LOSS_LOG).open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    accelerator.log(
        {k: v for k, v in row.items() if k not in ("epoch", "step", "num_steps") and v is not None}, step=row["step"]
    )


def resume_if_possible(accelerator, out_dir: Path) -> tuple[int, int]:
    """(start epoch, step): from the latest complete checkpoint (optimizer, scheduler, RNG, adapter), else (0, 0)."""
    resume = latest_checkpoint(out_dir)
    if resume is None:
        if accelerator.is_main_process:
            (out_dir / LOSS_LOG).unlink(missing_ok=True)  # a fresh start: no stale log lines
        return 0, 0
    accelerator.load_state(str(resume))
    state = json.loads((resume / "DONE").read_text())
    _truncate_loss_log(out_dir / LOSS_LOG, state["step"])
    logger.info("resumed from %s (epoch %d, step %d)", resume, state["epoch"], state["step"])
    return state["epoch"], state["step"]


def _truncate_loss_log(path: Path, step: int) -> None:
    """Drop log lines past the checkpoint we resume from, so a resumed run's log has no duplicates."""
    if path.is_file():
        rows = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        write_text_atomic(path, "".join(line + "\n" for line in rows))


def save_checkpoint(accelerator, out_dir: Path, epoch: int, step: int) -> Path:
    """accelerate state (adapter, optimizer, scheduler, RNG) + a DONE marker written last."""
    path = out_dir / CHECKPOINTS_DIR / f"epoch_{epoch:06d}"
    accelerator.save_state(str(path))
    if accelerator.is_main_process:
        write_text_atomic(path / "DONE", json.dumps({"epoch": epoch, "step": step}))
    accelerator.wait_for_everyone()
    return path


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m cosmos_synth.train <train_config.json>")
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    train(load_config(TrainConfig, Path(argv[0])))


if __name__ == "__main__":
    main()
