"""Speed knobs for the DiT, shared by training and generation: attention backend, selective activation
checkpointing and regional torch.compile. None of them changes the model's function; they change how it runs.
"""

from __future__ import annotations

import logging

import torch
from torch.utils.checkpoint import checkpoint

logger = logging.getLogger(__name__)


def set_attention_backend(transformer, backend: str | None) -> None:
    """Route the DiT's attention through a diffusers backend ("_native_cudnn", "_native_flash", ...)."""
    if backend:
        transformer.set_attention_backend(backend)
        logger.info("attention backend: %s", backend)


def checkpoint_blocks(transformer, num_layers: int | None) -> int:
    """Recompute the activations of `num_layers` DiT blocks in the backward pass (None: all of them).

    Blocks are spread evenly over the depth. Each chosen block's `forward` is wrapped in place, so parameter names
    (and so adapters and checkpoints) are unchanged. Returns how many blocks were wrapped.
    """
    blocks = list(transformer.transformer_blocks)
    count = len(blocks) if num_layers is None else min(num_layers, len(blocks))
    chosen = {round(i * len(blocks) / count) for i in range(count)} if count else set()
    for index in sorted(chosen):
        block = blocks[index]
        forward = block.forward

        def run(*args, _forward=forward, **kwargs):
            if torch.is_grad_enabled():
                return checkpoint(_forward, *args, use_reentrant=False, **kwargs)
            return _forward(*args, **kwargs)

        block.forward = run
    logger.info("activation checkpointing on %d of %d blocks", len(chosen), len(blocks))
    return len(chosen)


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
