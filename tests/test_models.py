"""Models: sizes of the paper preset, shapes, gradients, and the fast paths' equivalence."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ddlvad import Config, UserError, build_model
from ddlvad.config import ScoreConfig
from ddlvad.models import C3DSU, BatchNorm2d, ConvBlock, UNet, count_parameters, set_conv_layout
from ddlvad.score import score_video, score_video_naive


def paper(arch: str) -> Config:
    cfg = Config.preset("paper")
    cfg.model.arch = arch
    if arch == "unet":
        cfg.data.frames = 1
    return cfg


def test_paper_preset_parameter_counts():
    # docs/method.md §3: about 99.0 M (C3DSU) and 89.6 M (UNet) at L=512, C=3, T=3.
    assert count_parameters(build_model(paper("c3dsu"))) == pytest.approx(99.0e6, rel=1e-3)
    assert count_parameters(build_model(paper("unet"))) == pytest.approx(89.6e6, rel=1e-3)


def test_paper_text_block_is_smaller_and_runs():
    cfg = Config.preset("tiny")
    cfg.model.block = "paper"
    model = build_model(cfg)
    ref = build_model(Config.preset("tiny"))
    assert count_parameters(model) < count_parameters(ref)
    assert model.encoder.blocks[0].branches[0].kernel_size == (3, 3)
    assert len(model.encoder.blocks[0].branches) == 4
    out = model(torch.rand(2, 1, 3, 32, 48))
    assert out.shape == (2, 1, 32, 48)


@pytest.mark.parametrize("arch,frames", [("c3dsu", 3), ("c3dsu", 5), ("unet", 1)])
def test_output_shape_range_and_every_parameter_gets_a_gradient(arch, frames):
    torch.manual_seed(0)
    cfg = Config.preset("tiny")
    cfg.model.arch, cfg.data.frames, cfg.data.channels = arch, frames, 3
    model = build_model(cfg)
    out = model(torch.rand(2, 3, frames, 32, 48))
    assert out.shape == (2, 3, 32, 48)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    out.mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert missing == []


@pytest.mark.parametrize("arch,frames", [("c3dsu", 3), ("unet", 1)])
def test_channels_last_layout_changes_no_output_or_gradient(arch, frames):
    """With model.channels_last, build_model stores the Conv2d weights channels-last; the computation is the
    default layout's up to float rounding: outputs and gradients agree with a copy switched back."""
    torch.manual_seed(0)
    cfg = Config.preset("tiny")
    cfg.model.arch, cfg.data.frames, cfg.data.height, cfg.data.width = arch, frames, 64, 96
    cfg.model.channels_last = True
    fast = build_model(cfg).train()
    conv = next(m for m in fast.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size[0] > 1 and m.in_channels > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    plain = set_conv_layout(build_model(cfg).train(), torch.contiguous_format)
    plain.load_state_dict(fast.state_dict())
    plain_conv = next(m for m in plain.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size[0] > 1 and m.in_channels > 1)
    assert plain_conv.weight.is_contiguous()  # load_state_dict copies values and keeps the layout
    clip = torch.rand(2, 1, frames, 64, 96)
    out_fast, out_plain = fast(clip), plain(clip)
    torch.testing.assert_close(out_fast, out_plain, rtol=1e-4, atol=1e-4)  # measured: 2e-5
    out_fast.square().mean().backward()
    out_plain.square().mean().backward()
    for (name, a), b in zip(fast.named_parameters(), plain.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-3, atol=1e-5, msg=name)
    cfg.model.channels_last = False
    assert build_model(cfg).state_dict().keys() == fast.state_dict().keys()
    assert all(m.weight.is_contiguous() for m in build_model(cfg).modules() if isinstance(m, torch.nn.Conv2d))


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_is_exact_for_channels_last_input(momentum):
    """PyTorch's channels-last CPU kernel computes the batch statistics ~1e-5 off a float64
    reference at this size (the NCHW kernel ~5e-8); ours keeps the output, the input gradient
    and the running statistics within 1e-6 in both layouts."""
    torch.manual_seed(0)
    x64 = torch.randn(24, 8, 64, 96, dtype=torch.float64) * 0.5 + 2.0
    grad64 = torch.randn(x64.shape, dtype=torch.float64)

    def run(module, dtype, layout, steps=2):
        bn = module.to(dtype).train()
        bn.momentum = momentum
        with torch.no_grad():
            bn.weight.copy_(torch.linspace(0.5, 1.5, 8))
            bn.bias.copy_(torch.linspace(-1, 1, 8))
        for _ in range(steps):  # two batches: the running statistics average them
            x = x64.to(dtype).contiguous(memory_format=layout).requires_grad_()
            y = bn(x)
            grads = torch.autograd.grad(y, [x, bn.weight, bn.bias], grad64.to(dtype).contiguous(memory_format=layout))
        return [t.double() for t in (y, *grads, bn.running_mean, bn.running_var)], bn, y

    ref, _, _ = run(torch.nn.BatchNorm2d(8), torch.float64, torch.contiguous_format)
    for layout in (torch.contiguous_format, torch.channels_last):
        got, bn, y = run(BatchNorm2d(8), torch.float32, layout)
        assert y.is_contiguous(memory_format=layout)
        assert int(bn.num_batches_tracked) == 2
        # dweight/dbias come from PyTorch's channels-last backward kernel: ~7e-6 there
        tolerance = {"output": 1e-6, "dx": 1e-6, "dweight": 3e-5, "dbias": 3e-5, "running_mean": 1e-6, "running_var": 1e-6}
        for (name, tol), a, b in zip(tolerance.items(), got, ref):
            assert ((a - b).norm() / b.norm()).item() < tol, (layout, name)
    native, _, _ = run(torch.nn.BatchNorm2d(8), torch.float32, torch.channels_last, steps=1)
    assert ((native[0] - ref[0]).norm() / ref[0].norm()).item() > 1e-6  # what this class is for


@pytest.mark.parametrize("h,w", [(40, 48), (32, 50), (8, 16)])
def test_frame_size_not_divisible_by_16_is_a_clear_error(h, w):
    """At the boundary where a config is validated (once per command: ``Config.validate``)."""
    cfg = Config.preset("tiny")
    cfg.data.height, cfg.data.width = h, w
    with pytest.raises(UserError, match="multiple of 16"):
        cfg.validate()


def test_middle_slice_conv3d_equals_same_padded_conv3d():
    # C3DSU computes only the middle time slice of the paper's 'same'-padded Conv3d.
    torch.manual_seed(0)
    model = C3DSU(channels=1, latent=16, frames=3).eval()
    x = torch.rand(2, 1, 3, 32, 32)
    feats = [f.reshape(2, 3, *f.shape[1:]).transpose(1, 2) for f in model.encode_frames(x.transpose(1, 2).reshape(6, 1, 32, 32))]
    for conv, f in zip(model.temporal, feats):
        naive = F.conv3d(f, conv.weight, conv.bias, padding=(1, 1, 1))[:, :, 1]
        assert torch.allclose(conv(f).squeeze(2), naive, atol=1e-5)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("down", [True, False])
def test_fused_resample_projection_equals_shuffle_then_1x1_conv(down, layout):
    """An encoder ConvBlock folds pixel unshuffle and the 1x1 projection into one strided
    convolution: same outputs and gradients (double precision, so that only the summation
    order differs). Decoder blocks keep the plain path, checked the same way."""
    torch.manual_seed(0)
    block = ConvBlock(6, 5, down=down).double().to(memory_format=layout)
    width = len(block.branches) * (5 if down else 20)
    mid = torch.rand(2, width, 8, 12, dtype=torch.float64).to(memory_format=layout).requires_grad_()
    weight, bias = block.project.weight, block.project.bias
    plain = F.conv2d(F.pixel_unshuffle(mid, 2) if down else F.pixel_shuffle(mid, 2), weight, bias)
    fused = block.resample_project(mid)
    expected = (2, 5, 4, 6) if down else (2, 5, 16, 24)
    assert fused.shape == plain.shape == expected
    torch.testing.assert_close(fused, plain, rtol=1e-12, atol=1e-12)
    probe = torch.rand(expected, dtype=torch.float64)  # a loss that weights every output differently
    grads_plain = torch.autograd.grad((plain * probe).sum(), [mid, weight, bias])
    grads_fused = torch.autograd.grad((fused * probe).sum(), [mid, weight, bias])
    for a, b in zip(grads_fused, grads_plain):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    x = torch.rand(2, 6, 8, 12, dtype=torch.float64).to(memory_format=layout)
    assert block(x).shape == expected


@pytest.mark.parametrize("arch,frames", [("c3dsu", 3), ("unet", 1)])
def test_encoder_reuse_scoring_equals_window_by_window(arch, frames):
    torch.manual_seed(0)
    model = C3DSU(1, 16, 3) if arch == "c3dsu" else UNet(1, 16)
    frames_u8 = np.random.default_rng(0).integers(0, 256, (11, 32, 48, 1), dtype=np.uint8)
    sc = ScoreConfig(patch=8)
    fast = score_video(model, frames_u8, sc, batch_size=4)
    naive = score_video_naive(model, frames_u8, sc, batch_size=3)
    one_by_one = score_video(model, frames_u8, sc, batch_size=1)
    np.testing.assert_allclose(fast, one_by_one, rtol=1e-5, atol=1e-6)  # batched == one frame at a time
    h = frames // 2
    assert np.isnan(fast[:h]).all() and np.isnan(fast[len(fast) - h:]).all()
    np.testing.assert_allclose(fast[h:len(fast) - h], naive[h:len(fast) - h], rtol=1e-5, atol=1e-6)


def test_flip_averaging_is_the_mean_of_the_two_maps_and_makes_scores_mirror_invariant():
    """score.flip (beyond the paper): the error map is the mean of the plain map and the mirrored
    frames' map mirrored back, so mirroring the video cannot change a frame's score, while
    without it the untrained model scores a video and its mirror image differently."""
    from ddlvad.exporter import ScoringModule
    from ddlvad.score import Scorer

    torch.manual_seed(0)
    model = C3DSU(1, 16, 3).eval()
    video = np.random.default_rng(1).integers(0, 256, (9, 32, 48, 1), dtype=np.uint8)
    mirror = np.ascontiguousarray(video[:, :, ::-1])
    plain, flipped = Scorer(model, ScoreConfig(patch=8)), Scorer(model, ScoreConfig(patch=8, flip=True))
    expected = (plain.errors(video) + plain.errors(mirror).flip(-1)) / 2
    torch.testing.assert_close(flipped.errors(video), expected, rtol=0, atol=0)
    a, b = flipped.score_video(video)[1:-1], flipped.score_video(mirror)[1:-1]
    np.testing.assert_allclose(a, b, rtol=1e-5)  # 48 px: both grids are symmetric under mirroring
    assert np.abs(plain.score_video(video)[1:-1] - plain.score_video(mirror)[1:-1]).max() > 1e-4
    clips = torch.from_numpy(video).float().div(255).permute(3, 0, 1, 2)      # (C, N, H, W)
    clips = torch.stack([clips[:, k:k + 3] for k in range(7)])                 # (7, C, 3, H, W)
    with torch.no_grad():
        _, _, exported = ScoringModule(model, ScoreConfig(patch=8, flip=True))(clips)
    np.testing.assert_allclose(exported.numpy(), a, rtol=1e-5, atol=1e-7)
