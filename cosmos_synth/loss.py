"""The reference training objective: rectified flow with a velocity target and conditioning latent frames.

Per sample (docs/recipe.md, "Training"):
    t = sigmoid(randn);  sigma = 5t / (1 + 4t)                     logit-normal, shifted towards high noise
    xt = noise * sigma + clean * (1 - sigma);  xt = clean where cond_mask
    target v = noise - clean
    timestep = 0.0001 on conditioning frames, sigma elsewhere     (per latent frame)
    pred = v where cond_mask (no loss there);  loss = mse(pred, v)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FlowInputs:
    """What the DiT sees and what it should predict, for one batch."""

    noisy: torch.Tensor  # xt, (B, C, T, H, W)
    timestep: torch.Tensor  # (B, 1, T, 1, 1): cond_timestep on conditioning frames, sigma elsewhere
    cond_mask: torch.Tensor  # (B, 1, T, H, W): 1 on conditioning latent frames
    target: torch.Tensor  # velocity v = noise - clean, (B, C, T, H, W)


def sample_sigma(batch_size: int, *, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Logit-normal sigma shifted by 5 (sigma = 5t / (1 + 4t), t = sigmoid(randn)), shape (B, 1, 1, 1, 1)."""
    t = torch.sigmoid(torch.randn(batch_size, generator=generator, device=device, dtype=torch.float32))
    sigma = 5.0 * t / (1.0 + 4.0 * t)
    return sigma.view(batch_size, 1, 1, 1, 1)


def condition_mask(shape: tuple[int, ...], num_cond_latent_frames: list[int], *, device, dtype):
    """(indicator (B,1,T,1,1), mask (B,1,T,H,W)): the first k latent frames of each sample condition the rest.

    Same semantics as `Cosmos2_5_PredictBasePipeline.create_condition_mask`, which generation uses.
    """
    batch, _, frames, height, width = shape
    indicator = torch.zeros(batch, 1, frames, 1, 1, dtype=dtype, device=device)
    for index, k in enumerate(num_cond_latent_frames):
        indicator[index, :, :k] = 1.0
    return indicator, indicator.expand(-1, -1, -1, height, width)


def build_flow_inputs(
    clean: torch.Tensor,
    noise: torch.Tensor,
    sigma: torch.Tensor,
    num_cond_latent_frames: list[int],
    *,
    cond_timestep: float,
) -> FlowInputs:
    """Noise `clean` latents to level `sigma`, keeping conditioning frames clean."""
    indicator, mask = condition_mask(tuple(clean.shape), num_cond_latent_frames, device=clean.device, dtype=clean.dtype)
    sigma = sigma.to(clean.dtype)
    noisy = noise * sigma + clean * (1.0 - sigma)
    noisy = clean * mask + noisy * (1.0 - mask)
    timestep = indicator * cond_timestep + (1.0 - indicator) * sigma
    return FlowInputs(noisy=noisy, timestep=timestep, cond_mask=mask, target=noise - clean)


def masked_velocity_loss(pred: torch.Tensor, inputs: FlowInputs) -> torch.Tensor:
    """MSE to the velocity target; conditioning frames take the target's value, so they carry no loss."""
    mask = inputs.cond_mask.to(pred.dtype)
    pred = inputs.target.to(pred.dtype) * mask + pred * (1.0 - mask)
    return torch.nn.functional.mse_loss(pred.float(), inputs.target.float())


def predict_velocity(
    transformer, inputs: FlowInputs, prompt_embeds: torch.Tensor, *, dtype: torch.dtype
) -> torch.Tensor:
    """One DiT forward pass as the reference trains it (padding mask of zeros at the pixel size).

    `transformer` may be wrapped (DDP), so the weights' `dtype` is passed in.
    """
    height, width = inputs.noisy.shape[-2] * 8, inputs.noisy.shape[-1] * 8
    padding_mask = inputs.noisy.new_zeros(1, 1, height, width, dtype=dtype)
    return transformer(
        hidden_states=inputs.noisy.to(dtype),
        condition_mask=inputs.cond_mask.to(dtype),
        timestep=inputs.timestep.to(dtype),
        encoder_hidden_states=prompt_embeds.to(dtype),
        padding_mask=padding_mask,
        return_dict=False,
    )[0]
