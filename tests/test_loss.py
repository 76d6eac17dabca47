"""Loss (Eqs. 3-7) on tiny tensors worked out by hand, and where the gradients go."""

import math

import pytest
import torch

from ddlvad.config import DDLConfig
from ddlvad.loss import ddl_loss, distinction_loss, pixel_error, recon_loss
from ddlvad.pseudo_anomaly import AnomalyWeight, blend


def t(values):  # (1, 1, 1, W) image from a list
    return torch.tensor(values, dtype=torch.float32).reshape(1, 1, 1, -1)


def test_pixel_error_is_channel_l2_over_sqrt_c():
    a = torch.zeros(1, 2, 1, 2)
    b = torch.tensor([[[[3.0, 0.0]], [[4.0, 0.0]]]])  # pixel 0 differs by (3, 4), pixel 1 by (0, 0)
    e = pixel_error(a, b)
    # ||(3, 4)|| / sqrt(2) = 5 / 1.41421 = 3.53553; mean with the zero pixel = 1.76777
    assert e.shape == (1, 1, 2)
    assert e[0, 0, 0].item() == pytest.approx(5 / math.sqrt(2))
    assert recon_loss(a, b).item() == pytest.approx(5 / math.sqrt(2) / 2)


# Two masked pixels: X_t = (0.5, 0.5), X_A_t = (0.9, 0.1), f(X_A) = (0.6, 0.3)
# P = |X_t - f(X_A)| = (0.1, 0.2); N = |X_A_t - f(X_A)| = (0.3, 0.2)
# pixel form: mean(0.1/0.3, 0.2/0.2) = (1/3 + 1)/2 = 2/3
# norm form: ||P|| / ||N|| = sqrt(0.05) / sqrt(0.13) = 0.620174
TARGET, ANOM, RECON, MASK = t([0.5, 0.5]), t([0.9, 0.1]), t([0.6, 0.3]), torch.ones(1, 1, 2)


def test_distinction_pixel_form_golden():
    assert distinction_loss(TARGET, ANOM, RECON, MASK, "pixel", 1e-9).item() == pytest.approx(2 / 3, rel=1e-5)


def test_distinction_norm_form_golden():
    assert distinction_loss(TARGET, ANOM, RECON, MASK, "norm", 1e-9).item() == pytest.approx(math.sqrt(0.05 / 0.13), rel=1e-5)


def test_distinction_ignores_unmasked_pixels_and_empty_masks():
    mask = torch.tensor([[[1.0, 0.0]]])
    # only pixel 0 counts: 0.1 / 0.3
    assert distinction_loss(TARGET, ANOM, RECON, mask, "pixel", 1e-9).item() == pytest.approx(1 / 3, rel=1e-5)
    assert distinction_loss(TARGET, ANOM, RECON, mask, "norm", 1e-9).item() == pytest.approx(1 / 3, rel=1e-5)
    empty = torch.zeros(1, 1, 2)
    for form in ("pixel", "norm"):
        assert distinction_loss(TARGET, ANOM, RECON, empty, form, 1e-6).item() == 0.0


def test_norm_form_averages_per_sample_and_skips_empty_samples():
    target = torch.cat([TARGET, TARGET])
    anom = torch.cat([ANOM, ANOM])
    recon = torch.cat([RECON, RECON])
    mask = torch.cat([MASK, torch.zeros(1, 1, 2)])
    assert distinction_loss(target, anom, recon, mask, "norm", 1e-9).item() == pytest.approx(math.sqrt(0.05 / 0.13), rel=1e-5)


def test_total_is_recon_plus_lambda_dist():
    recon_normal = t([0.4, 0.5])  # e = (0.1, 0) -> L_recon = 0.05
    parts = ddl_loss(TARGET, recon_normal, ANOM, RECON, MASK, DDLConfig(lam=0.5, loss_form="pixel", eps=1e-9))
    assert parts.recon.item() == pytest.approx(0.05, rel=1e-5)
    assert parts.dist.item() == pytest.approx(2 / 3, rel=1e-5)
    assert parts.total.item() == pytest.approx(0.05 + 0.5 * 2 / 3, rel=1e-5)
    only = ddl_loss(TARGET, recon_normal)
    assert only.dist is None and only.total.item() == pytest.approx(0.05, rel=1e-5)


def test_pseudo_anomaly_follows_eq1_and_leaves_outside_the_mask_unchanged():
    clip = torch.rand(2, 3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(2, 1, 3, 8, 8)
    mask[:, :, :, 2:5, 3:7] = 1
    s = torch.tensor(0.3)
    noise = torch.rand(clip.shape, generator=torch.Generator().manual_seed(7))
    out = blend(clip, mask, s, noise)
    outside = mask.expand_as(clip) == 0
    assert torch.equal(out[outside], clip[outside])
    inside = ~outside
    assert torch.allclose(out[inside], (0.7 * clip + 0.3 * noise)[inside])


def test_anomaly_weight_starts_at_half_and_gets_gradient_only_from_distinction():
    w = AnomalyWeight(0.0)
    assert w().item() == 0.5
    model = torch.nn.Conv2d(1, 1, 3, padding=1)
    clip = torch.rand(1, 1, 1, 8, 8)
    mask = torch.zeros(1, 1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    anomalous = blend(clip, mask, w(), torch.rand(clip.shape))
    recon = torch.sigmoid(model(clip[:, :, 0]))
    recon_a = torch.sigmoid(model(anomalous[:, :, 0]))
    recon_loss(clip[:, :, 0], recon).backward(retain_graph=True)
    assert w.logit.grad is None
    distinction_loss(clip[:, :, 0], anomalous[:, :, 0], recon_a, mask[:, 0, 0], "pixel", 1e-6).backward()
    assert w.logit.grad is not None and w.logit.grad.item() != 0


def test_frozen_weight_for_sdl():
    w = AnomalyWeight(0.0, trainable=False)
    assert not w.logit.requires_grad and w().item() == 0.5
