"""Speed knobs for the DiT, shared by training and generation: attention backend, selective activation
checkpointing and regional torch.compile. None of them changes the model's function; they change how it runs.
"""

from __future__ import annotations

import functools
import logging

import torch
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

logger = logging.getLogger(__name__)


def set_attention_backend(transformer, backend: str | None) -> None:
    """Route the DiT's attention through a diffusers backend ("_native_cudnn", "_native_flash", ...)."""
    if backend:
        transformer.set_attention_backend(backend)
        logger.info("attention backend: %s", backend)


# The attention kernels' forward ops: under the "save_attention" policy their outputs are kept for the backward
# pass instead of being recomputed. Ops this torch build lacks are skipped.
_ATTENTION_OPS = frozenset(
    getattr(torch.ops.aten, name).default
    for name in ("_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention",
                 "_scaled_dot_product_efficient_attention", "_scaled_dot_product_flash_attention_for_cpu")
    if hasattr(torch.ops.aten, name)
)

CHECKPOINT_POLICIES = ("full", "save_attention")


def _save_attention(ctx, op, *args, **kwargs):
    """Selective checkpointing policy: keep the self-attention kernels' outputs, recompute everything else.

    Self-attention is the op whose query and key lengths match (args: query, key, value as (B, heads, S, D));
    cross-attention over the 512 prompt tokens costs little to recompute, so it is not kept.
    """
    if op in _ATTENTION_OPS and args[0].shape[-2] == args[1].shape[-2]:
        return CheckpointPolicy.MUST_SAVE
    return CheckpointPolicy.PREFER_RECOMPUTE


def checkpoint_blocks(transformer, num_layers: int | None, *, policy: str = "full") -> list[int]:
    """Checkpoint `num_layers` DiT blocks (None: all of them); returns the indices of the wrapped blocks.

    policy "full": a wrapped block keeps only its inputs and recomputes its whole forward in the backward pass.
    policy "save_attention": a wrapped block also keeps its self-attention output (one hidden-size tensor plus the
    softmax statistics) and recomputes only the cheap rest (projections, norms, cross-attention, MLP). Self-attention
    is about two thirds of a block's forward at 31k tokens, so this recomputes a third of the work for ≈ 130 MB more
    per block at 93x432x768.

    Blocks are spread evenly over the depth. Each chosen block's `forward` is wrapped in place, so parameter names
    (and so adapters and checkpoints) are unchanged.
    """
    if policy not in CHECKPOINT_POLICIES:
        raise ValueError(f"checkpoint policy {policy!r}: use one of {', '.join(CHECKPOINT_POLICIES)}.")
    blocks = list(transformer.transformer_blocks)
    count = len(blocks) if num_layers is None else min(num_layers, len(blocks))
    chosen = sorted({round(i * len(blocks) / count) for i in range(count)}) if count else []
    options = {"use_reentrant": False}
    if policy == "save_attention":
        options["context_fn"] = functools.partial(create_selective_checkpoint_contexts, _save_attention)
    for index in chosen:
        block = blocks[index]
        forward = block.forward

        def run(*args, _forward=forward, **kwargs):
            if torch.is_grad_enabled():
                return checkpoint(_forward, *args, **options, **kwargs)
            return _forward(*args, **kwargs)

        block.forward = run
    logger.info("activation checkpointing (%s) on %d of %d blocks", policy, len(chosen), len(blocks))
    return chosen


def compile_blocks(transformer, *, activation_memory_budget: float | None = None) -> None:
    """torch.compile each DiT block in place (regional compilation: the blocks share one compiled graph, so the
    first call compiles once and later calls at the same shapes reuse it).

    `activation_memory_budget` (0-1, process-wide) lets the compiler recompute cheap operations in the backward pass
    instead of saving their outputs, keeping saved activations near that fraction of the default.
    """
    if activation_memory_budget is not None:
        import torch._functorch.config as functorch_config

        functorch_config.activation_memory_budget = activation_memory_budget
    for block in transformer.transformer_blocks:
        block.compile()
    logger.info("compiled %d DiT blocks", len(transformer.transformer_blocks))
