"""Speed knobs for the DiT, shared by training and generation: attention backend, selective activation
checkpointing, regional torch.compile and FP8 matmuls. The first three change how the model runs, not what it
computes; FP8 matmuls (opt-in) also change its numerics, by a few percent per forward.
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
    for name in (
        "_scaled_dot_product_cudnn_attention",
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_flash_attention_for_cpu",
    )
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


# The DiT block linears whose matmuls `use_fp8_matmuls` moves to FP8: attention projections and MLP, nearly all of a
# block's GEMM time. The small adaLN modulation layers (a few rows each) stay in bf16.
FP8_MODULES = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2")
E4M3 = torch.float8_e4m3fn
E4M3_MAX = torch.finfo(E4M3).max


def to_e4m3(tensor: torch.Tensor, *, per_row: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(e4m3 tensor, float32 scale) with tensor ≈ e4m3.float() * scale; the largest |value| maps to e4m3's 448.

    per_row: one scale per row (over the last dim, shape (..., 1)); else one for the whole tensor (shape (1,)).
    """
    amax = tensor.abs().amax(dim=-1, keepdim=True) if per_row else tensor.abs().amax().reshape(1)
    scale = amax.float().clamp(min=1e-12) / E4M3_MAX
    return (tensor.float() / scale).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3), scale


class _Fp8Matmul(torch.autograd.Function):
    """x @ weight.T with both operands in e4m3 (a scale per row of x and per output channel), and the backward pass's
    input gradient grad @ weight the same way. The weight is frozen, so no weight gradient is computed at all (the
    FP8 training recipes in torchao compute one unconditionally, which with LoRA adds back the GEMM they save)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        xq, xs = to_e4m3(x)
        wq, ws = to_e4m3(weight)
        ctx.save_for_backward(weight)
        return torch._scaled_mm(xq, wq.t(), scale_a=xs, scale_b=ws.t(), out_dtype=x.dtype, use_fast_accum=True)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        if not ctx.needs_input_grad[0]:
            return None, None
        (weight,) = ctx.saved_tensors
        gq, gs = to_e4m3(grad.contiguous())
        wq, ws = to_e4m3(weight.t().contiguous())  # a scale per input channel; wq.t() is the column-major operand
        return torch._scaled_mm(gq, wq.t(), scale_a=gs, scale_b=ws.t(), out_dtype=grad.dtype), None


class Fp8Linear(torch.nn.Linear):
    """A frozen nn.Linear whose matmuls run in FP8 (see `use_fp8_matmuls`); parameters and names are unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.requires_grad:
            raise RuntimeError("Fp8Linear computes no weight gradient; it is only for frozen weights.")
        device = x.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else self.weight.dtype
        out = _Fp8Matmul.apply(x.reshape(-1, x.shape[-1]).to(dtype), self.weight.to(dtype))
        out = out.reshape(*x.shape[:-1], self.out_features)
        return out if self.bias is None else out + self.bias.to(dtype)


def use_fp8_matmuls(transformer, modules: tuple[str, ...] = FP8_MODULES) -> int:
    """Run the DiT blocks' `modules` linears (under a LoRA/DoRA wrapper: their frozen base layers) in FP8, e4m3 with
    per-row scales, forward and input-gradient; returns how many were converted.

    The weights must be frozen (training: the base model under an adapter; generation: after the adapter is fused).
    A forward's output moves by a few percent (benchmarks/RESULTS.md gives the measured error and speed). Needs a GPU
    with FP8 tensor cores (compute capability 8.9+); on the CPU it runs, slowly, for tests.
    """
    device = next(transformer.parameters()).device
    if device.type == "cuda" and torch.cuda.get_device_capability(device) < (8, 9):
        name, capability = torch.cuda.get_device_name(device), torch.cuda.get_device_capability(device)
        raise ValueError(
            f"fp8_matmuls needs FP8 tensor cores (compute capability 8.9+: Ada, Hopper, Blackwell); "
            f"{name} is {capability[0]}.{capability[1]}. Set fp8_matmuls to false."
        )
    converted = 0
    for name, module in transformer.transformer_blocks.named_modules():
        owner = name.removesuffix(".base_layer")
        if type(module) is torch.nn.Linear and owner.endswith(tuple("." + m for m in modules)):
            if module.weight.requires_grad:
                raise ValueError(f"fp8_matmuls: {name} has a trainable weight; FP8 layers must be frozen.")
            module.__class__ = Fp8Linear
            converted += 1
    logger.info("FP8 matmuls in %d linear layers", converted)
    return converted
