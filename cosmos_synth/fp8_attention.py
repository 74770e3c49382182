"""FP8 self-attention for generation: cuDNN's fused FP8 attention kernel, reached through NVIDIA's cuDNN frontend.

torch's `scaled_dot_product_attention` takes no FP8 inputs, so `use_fp8_attention` swaps the DiT blocks'
self-attention processors for one that runs the same steps as diffusers' (projections, QK RMS norms, RoPE), then:

    q, k, v -> e4m3, one scale per tensor (its largest |value| at e4m3's 448)
    S = q k^T / sqrt(d) in float32;  P = softmax(S), quantised to e4m3 at scale 448;  O = P v in float32
    O -> e4m3 at v's scale, then back to the model's dtype

On a GPU the middle line is one cuDNN kernel (Hopper or newer; `pip install 'cosmos-synth[fp8]'`). Anywhere else
`fp8_attention_reference` runs the same arithmetic in plain torch: slowly, with softmax normalised before the
probabilities are quantised (cuDNN quantises them against a running maximum), so the two agree closely but not
bit for bit. The error this adds, and whether a video keeps PSNR >= 35 dB, is measured in benchmarks/RESULTS.md.
Generation only: there is no backward pass.
"""

from __future__ import annotations

import logging
import math

import torch

from cosmos_synth.speed import E4M3, E4M3_MAX, to_e4m3

logger = logging.getLogger(__name__)

_GRAPHS: dict[tuple, tuple] = {}  # per (device, shapes, strides): built cuDNN graph, its tensors, workspace, scratch
_DEVICES: dict[int, tuple] = {}  # per GPU: cuDNN handle, the probabilities' descale and scale (1/448, 448)


def fp8_attention_reference(q8, k8, v8, descale_q, descale_k, descale_v, descale_o) -> torch.Tensor:
    """The FP8 attention arithmetic in plain torch, (B, H, S, D) e4m3 in and out; see the module docstring."""
    q, k, v = q8.float() * descale_q, k8.float() * descale_k, v8.float() * descale_v
    probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    probs = (probs * E4M3_MAX).to(E4M3).float() / E4M3_MAX
    return ((probs @ v) / descale_o).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3)


@torch.library.custom_op("cosmos_synth::fp8_sdpa", mutates_args=())
def fp8_sdpa(
    q8: torch.Tensor,
    k8: torch.Tensor,
    v8: torch.Tensor,
    descale_q: torch.Tensor,
    descale_k: torch.Tensor,
    descale_v: torch.Tensor,
    descale_o: torch.Tensor,
) -> torch.Tensor:
    """Attention over e4m3 (B, H, S, D) inputs, each ≈ its e4m3 values times its per-tensor descale; the e4m3
    output (≈ out8 * descale_o) has q's strides."""
    if q8.is_cuda:
        return _cudnn_fp8_sdpa(q8, k8, v8, descale_q, descale_k, descale_v, descale_o)
    out = torch.empty_strided(q8.shape, q8.stride(), dtype=E4M3, device=q8.device)
    return out.copy_(fp8_attention_reference(q8, k8, v8, descale_q, descale_k, descale_v, descale_o))


@fp8_sdpa.register_fake
def _(q8, k8, v8, descale_q, descale_k, descale_v, descale_o):
    return torch.empty_strided(q8.shape, q8.stride(), dtype=E4M3, device=q8.device)


def fp8_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v for (B, H, S, D) inputs, computed in FP8, returned in query's dtype."""
    (q8, dq), (k8, dk), (v8, dv) = (to_e4m3(t, per_row=False) for t in (query, key, value))
    out8 = fp8_sdpa(q8, k8, v8, dq, dk, dv, dv)  # |out| <= max |v|, so v's scale keeps the output in range
    return (out8.float() * dv).to(query.dtype)


class Fp8SelfAttnProcessor:
    """The DiT's self-attention (the steps of diffusers' CosmosAttnProcessor2_0) with the attention itself in FP8.

    `attention` is the kernel, (B, H, S, D) query/key/value in, same shape out; tests pass torch's SDPA to check the
    steps around it against diffusers' processor.
    """

    def __init__(self, attention=fp8_attention):
        self.attention = attention

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError("FP8 attention serves the DiT's self-attention (attn1): no context, no mask.")
        query, key, value = (
            proj(hidden_states).unflatten(2, (attn.heads, -1)).transpose(1, 2)
            for proj in (attn.to_q, attn.to_k, attn.to_v)
        )
        query, key = attn.norm_q(query), attn.norm_k(key)
        if image_rotary_emb is not None:
            from diffusers.models.embeddings import apply_rotary_emb

            query = apply_rotary_emb(query, image_rotary_emb, use_real=True, use_real_unbind_dim=-2)
            key = apply_rotary_emb(key, image_rotary_emb, use_real=True, use_real_unbind_dim=-2)
        out = self.attention(query, key, value).transpose(1, 2).flatten(2, 3).type_as(query)
        return attn.to_out[1](attn.to_out[0](out))


def use_fp8_attention(transformer) -> int:
    """Run every DiT block's self-attention in FP8 (generation only); returns how many blocks were switched.

    On CUDA this needs a Hopper-or-newer GPU and the cuDNN frontend (`pip install 'cosmos-synth[fp8]'`); on the CPU
    the plain-torch arithmetic runs instead (tests).
    """
    device = next(transformer.parameters()).device
    if device.type == "cuda":
        if torch.cuda.get_device_capability(device) < (9, 0):
            name, (major, minor) = torch.cuda.get_device_name(device), torch.cuda.get_device_capability(device)
            raise ValueError(
                f"fp8_attention needs cuDNN's FP8 attention (compute capability 9.0+: Hopper, "
                f"Blackwell); {name} is {major}.{minor}. Set fp8_attention to false."
            )
        try:
            import cudnn  # noqa: F401
        except ImportError as error:
            raise ValueError(
                "fp8_attention needs NVIDIA's cuDNN frontend: pip install 'cosmos-synth[fp8]' "
                "(nvidia-cudnn-frontend), or set fp8_attention to false."
            ) from error
    for block in transformer.transformer_blocks:
        block.attn1.set_processor(Fp8SelfAttnProcessor())
    logger.info("FP8 self-attention in %d blocks", len(transformer.transformer_blocks))
    return len(transformer.transformer_blocks)


def _cudnn_fp8_sdpa(q8, k8, v8, descale_q, descale_k, descale_v, descale_o) -> torch.Tensor:
    import cudnn

    device = q8.device.index if q8.device.index is not None else torch.cuda.current_device()
    if device not in _DEVICES:
        probs = torch.full((1, 1, 1, 1), E4M3_MAX, device=q8.device)
        _DEVICES[device] = (cudnn.create_handle(), 1.0 / probs, probs)
    handle, descale_s, scale_s = _DEVICES[device]
    cudnn.set_stream(handle=handle, stream=torch.cuda.current_stream(q8.device).cuda_stream)
    key = (device, tuple(q8.shape), tuple(k8.shape), q8.stride(), k8.stride(), v8.stride())
    if key not in _GRAPHS:
        _GRAPHS[key] = _build_graph(cudnn, handle, q8, k8, v8)
    graph, tensors, workspace_size, amax_scratch = _GRAPHS[key]
    out = torch.empty_strided(q8.shape, q8.stride(), dtype=E4M3, device=q8.device)
    values = [
        q8,
        k8,
        v8,
        *(d.reshape(1, 1, 1, 1) for d in (descale_q, descale_k, descale_v)),
        descale_s,
        scale_s,
        (1.0 / descale_o).reshape(1, 1, 1, 1),
        out,
        *amax_scratch,
    ]
    workspace = torch.empty(workspace_size, device=q8.device, dtype=torch.uint8)
    graph.execute(dict(zip(tensors, values, strict=True)), workspace, handle=handle)
    return out


def _build_graph(cudnn, handle, q8, k8, v8):
    f8, f32 = cudnn.data_type.FP8_E4M3, cudnn.data_type.FLOAT
    graph = cudnn.pygraph(io_data_type=f8, intermediate_data_type=f32, compute_data_type=f32, handle=handle)
    q, k, v = (
        graph.tensor(name=name, dim=list(t.shape), stride=list(t.stride()), data_type=f8)
        for name, t in (("q", q8), ("k", k8), ("v", v8))
    )
    scalars = [
        graph.tensor(name=name, dim=[1, 1, 1, 1], stride=[1, 1, 1, 1], data_type=f32)
        for name in ("descale_q", "descale_k", "descale_v", "descale_s", "scale_s", "scale_o")
    ]
    out, _, amax_s, amax_o = graph.sdpa_fp8(
        q=q,
        k=k,
        v=v,
        descale_q=scalars[0],
        descale_k=scalars[1],
        descale_v=scalars[2],
        descale_s=scalars[3],
        scale_s=scalars[4],
        scale_o=scalars[5],
        is_inference=True,
        attn_scale=1.0 / math.sqrt(q8.shape[-1]),
        use_causal_mask=False,
        name="fp8_sdpa",
    )
    out.set_output(True).set_dim(list(q8.shape)).set_stride(list(q8.stride())).set_data_type(f8)
    for amax in (amax_s, amax_o):
        amax.set_output(True).set_dim([1, 1, 1, 1]).set_stride([1, 1, 1, 1]).set_data_type(f32)
    graph.validate()
    graph.build_operation_graph()
    graph.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
    graph.check_support()
    graph.build_plans()
    logger.info("built cuDNN FP8 attention for q %s", tuple(q8.shape))
    scratch = tuple(torch.empty(1, 1, 1, 1, device=q8.device) for _ in range(2))  # amaxes cuDNN writes, unread
    return graph, (q, k, v, *scalars, out, amax_s, amax_o), graph.get_workspace_size(), scratch
