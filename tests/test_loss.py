"""The training objective against its formulas (docs/recipe.md)."""

from __future__ import annotations

import torch

from cosmos_synth.loss import build_flow_inputs, condition_mask, masked_velocity_loss, sample_sigma

SHAPE = (2, 16, 5, 4, 6)  # B, C, T, H, W latents


def _inputs(k=(1, 2), sigma=(0.3, 0.8)):
    g = torch.Generator().manual_seed(0)
    clean, noise = torch.randn(SHAPE, generator=g), torch.randn(SHAPE, generator=g)
    s = torch.tensor(sigma).view(2, 1, 1, 1, 1)
    return clean, noise, s, build_flow_inputs(clean, noise, s, list(k), cond_timestep=1e-4)


def test_noisy_latents_interpolate_and_keep_conditioning_frames_clean():
    clean, noise, sigma, inputs = _inputs()
    expected = noise * sigma + clean * (1 - sigma)
    assert torch.equal(inputs.noisy[0, :, :1], clean[0, :, :1])  # sample 0: one conditioning latent frame
    assert torch.equal(inputs.noisy[1, :, :2], clean[1, :, :2])  # sample 1: two
    torch.testing.assert_close(inputs.noisy[0, :, 1:], expected[0, :, 1:])
    torch.testing.assert_close(inputs.noisy[1, :, 2:], expected[1, :, 2:])
    torch.testing.assert_close(inputs.target, noise - clean)


def test_timestep_is_0001_on_conditioning_frames_and_sigma_elsewhere():
    _, _, _, inputs = _inputs()
    ts = inputs.timestep[:, 0, :, 0, 0]
    assert ts.shape == (2, 5)
    torch.testing.assert_close(ts[0], torch.tensor([1e-4, 0.3, 0.3, 0.3, 0.3]))
    torch.testing.assert_close(ts[1], torch.tensor([1e-4, 1e-4, 0.8, 0.8, 0.8]))


def test_conditioning_frames_carry_no_loss():
    _, _, _, inputs = _inputs()
    pred = torch.randn(SHAPE)
    changed = pred.clone()
    changed[0, :, :1] += 100.0  # garbage on sample 0's conditioning frame
    changed[1, :, :2] -= 50.0  # and on sample 1's two
    assert masked_velocity_loss(pred, inputs) == masked_velocity_loss(changed, inputs)
    changed[0, :, 3] += 1.0  # a generated frame does count
    assert masked_velocity_loss(changed, inputs) > masked_velocity_loss(pred, inputs)


def test_loss_is_mse_over_all_elements_with_target_filled_in():
    _, _, _, inputs = _inputs()
    pred = torch.randn(SHAPE)
    mask = inputs.cond_mask
    expected = (((inputs.target * mask + pred * (1 - mask)) - inputs.target) ** 2).mean()
    torch.testing.assert_close(masked_velocity_loss(pred, inputs), expected)


def test_sigma_is_shifted_logit_normal():
    g = torch.Generator().manual_seed(1)
    sigma = sample_sigma(200_000, generator=g)
    assert sigma.shape == (200_000, 1, 1, 1, 1)
    t = torch.sigmoid(torch.randn(200_000, generator=torch.Generator().manual_seed(1)))
    torch.testing.assert_close(sigma.flatten(), 5 * t / (1 + 4 * t))
    assert 0 < sigma.min() and sigma.max() < 1
    assert 0.75 < sigma.median() < 0.88  # t's median is 0.5 → sigma 2.5 / 3 ≈ 0.833


def test_condition_mask_matches_the_pipeline(tiny_pipe):
    ind, mask = condition_mask(SHAPE, [1, 2], device="cpu", dtype=torch.float32)
    for k, row in zip([1, 2], range(2), strict=True):
        ref_ind, ref_mask = tiny_pipe.create_condition_mask((1,) + SHAPE[1:], "cpu", torch.float32, k)
        assert torch.equal(ind[row : row + 1], ref_ind) and torch.equal(mask[row : row + 1], ref_mask)
