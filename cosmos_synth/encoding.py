"""The frozen encoders' side of training: video windows through the VAE, prompts through the text encoder.

Training encodes them on every step, or once through the latent cache (cosmos_synth.cache), which stores exactly
what these functions return; both stages import them from here.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def encode_video(pipe, video: torch.Tensor) -> torch.Tensor:
    """(B, 3, T, H, W) in [-1, 1] → normalised clean latents: (mean - latents_mean) * (1 / latents_std)."""
    vae = pipe.vae
    mu = vae.encode(video.to(device=vae.device, dtype=vae.dtype)).latent_dist.mean.float()
    return (mu - pipe.latents_mean.to(mu.device)) * pipe.latents_std.to(mu.device)


@torch.no_grad()
def embed_prompt(pipe, prompt: str, device) -> torch.Tensor:
    """One prompt's embedding [1, L, D], as the pipeline computes it for a prompt it is given."""
    return pipe._get_prompt_embeds(prompt, device=device)


def embed_captions(pipe, captions: list[str], device) -> dict[str, torch.Tensor]:
    """Prompt embeddings on the CPU, once per distinct caption (the text encoder is frozen, so they never change)."""
    return {c: embed_prompt(pipe, c, device).cpu() for c in sorted(set(captions))}
