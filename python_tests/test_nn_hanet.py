"""hdml_ext.nn.HANet: a torchvision ResNet with NFA after every stage and NFE on chosen stages."""

from __future__ import annotations

import pytest
import torch
import torchvision.models as tvm
from conftest import DEVICES
from nn_helpers import assert_every_parameter_has_a_finite_grad

from hdml_ext.nn import BACKBONES, HANet


def test_paper_default_is_resnet50_with_a_1536_d_embedding():
    hanet = HANet()
    assert hanet.stage_channels == (256, 512, 1024, 2048)  # the backbone's real channels
    assert hanet.out_dim == 1536
    assert [nfa.channels for nfa in hanet.nfa] == [256, 512, 1024, 2048]
    assert hanet(torch.randn(2, 3, 64, 32)).shape == (2, 1536)


@pytest.mark.parametrize(("name", "channels"), [("resnet18", (64, 128, 256, 512)),
                                                ("resnet34", (64, 128, 256, 512)),
                                                ("resnet101", (256, 512, 1024, 2048))])
def test_channel_counts_come_from_the_backbone(name, channels):
    hanet = HANet(name)
    assert hanet.stage_channels == channels
    assert [hanet.nfe[s].channels for s in ("2", "3", "4")] == list(channels[1:])


@pytest.mark.parametrize(("stages", "out_dim", "depth"), [((4,), 512, 4), ((1, 2), 1024, 2),
                                                          ((1, 2, 3, 4), 2048, 4), ((3, 2), 1024, 3)])
def test_nfe_stage_subsets(stages, out_dim, depth):
    hanet = HANet("resnet18", nfe_stages=stages)
    assert hanet.out_dim == out_dim and hanet.nfe_stages == tuple(sorted(stages))
    assert hanet.backbone.depth == depth and not hasattr(hanet.backbone, f"layer{depth + 1}")
    assert len(hanet.nfa) == depth
    assert hanet(torch.randn(2, 3, 64, 32)).shape == (2, out_dim)


def test_without_nfa_is_the_plain_backbone_with_nfe():
    torch.manual_seed(0)
    hanet = HANet("resnet18", use_nfa=False).eval()
    assert hanet.nfa is None
    x = torch.randn(2, 3, 64, 32)
    trunk = hanet.backbone
    h = trunk.layer2(trunk.layer1(trunk.stem(x)))
    h3 = trunk.layer3(h)
    expected = torch.cat([hanet.nfe["2"](h), hanet.nfe["3"](h3), hanet.nfe["4"](trunk.layer4(h3))], dim=1)
    torch.testing.assert_close(hanet(x), expected)


def test_nfa_gates_feed_the_next_stage():
    torch.manual_seed(0)
    hanet = HANet("resnet18", nfe_stages=(2,)).eval()
    x = torch.randn(2, 3, 64, 32)
    before = hanet(x)
    with torch.no_grad():  # the first NFA now floors every gate at 0.3
        hanet.nfa[0].fc.weight.zero_()
        hanet.nfa[0].fc.bias.fill_(-10.0)
    trunk = hanet.backbone
    h = trunk.layer2(0.3 * trunk.layer1(trunk.stem(x)))
    torch.testing.assert_close(hanet(x), hanet.nfe["2"](hanet.nfa[1](h)))
    assert not torch.allclose(hanet(x), before)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_gradient_reaches_every_parameter(device, mode):
    torch.manual_seed(0)
    hanet = HANet("resnet18").to(device).train(mode == "train")
    hanet(torch.randn(4, 3, 64, 32, device=device)).square().mean().backward()
    assert_every_parameter_has_a_finite_grad(hanet)


def test_eval_mode_embeds_each_image_independently():
    torch.manual_seed(0)
    hanet = HANet("resnet18").eval()
    x = torch.randn(3, 3, 64, 32)
    with torch.no_grad():
        torch.testing.assert_close(hanet(x)[1:2], hanet(x[1:2]), rtol=1e-4, atol=1e-5)


def test_channels_last_input_gives_the_same_embedding():
    torch.manual_seed(0)
    hanet = HANet("resnet18").eval()
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        torch.testing.assert_close(hanet(x.to(memory_format=torch.channels_last)), hanet(x),
                                   rtol=1e-4, atol=1e-5)


def test_runs_under_cpu_autocast_bfloat16():
    # 128x64, not 64x32: oneDNN's AMX bf16 convolution intermittently returns NaN for the
    # stride-2 3x3 conv of layer4 on a 4x2 map (plain torchvision resnet18 shows it too).
    hanet = HANet("resnet18")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = hanet(torch.randn(2, 3, 128, 64))
    assert out.shape == (2, 1536) and torch.isfinite(out.float()).all()


def test_loads_a_local_torchvision_state_dict(tmp_path):
    torch.manual_seed(1)
    source = tvm.resnet18(weights=None)
    path = tmp_path / "resnet18.pt"
    torch.save(source.state_dict(), path)  # fc.* included: ignored
    hanet = HANet("resnet18", weights=path)
    torch.testing.assert_close(hanet.backbone.layer3[1].conv2.weight, source.layer3[1].conv2.weight)
    torch.testing.assert_close(hanet.backbone.bn1.running_var, source.bn1.running_var)


def test_loads_a_data_parallel_state_dict_into_a_truncated_backbone(tmp_path):
    source = tvm.resnet18(weights=None)
    path = tmp_path / "resnet18.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    hanet = HANet("resnet18", nfe_stages=(2,), weights=str(path))  # layer3/4 keys are skipped
    torch.testing.assert_close(hanet.backbone.layer2[0].conv1.weight, source.layer2[0].conv1.weight)


def test_rejects_a_missing_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights"):
        HANet("resnet18", weights=tmp_path / "nope.pt")


def test_rejects_weights_of_another_architecture(tmp_path):
    path = tmp_path / "resnet34.pt"
    torch.save(tvm.resnet34(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match=r"weights: .* does not fit this backbone: .*unexpected keys"):
        HANet("resnet18", weights=path)


def test_rejects_weights_of_the_wrong_shapes(tmp_path):
    path = tmp_path / "resnet50.pt"
    torch.save(tvm.resnet50(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match=r"weights: .*shape mismatches"):
        HANet("resnext50_32x4d", weights=path)


def test_rejects_a_weights_file_without_a_state_dict(tmp_path):
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(ValueError, match=r"weights: .*should hold a state dict"):
        HANet("resnet18", weights=path)


def test_rejects_an_unknown_backbone_listing_the_valid_ones():
    with pytest.raises(ValueError, match=r"should be one of resnet18, resnet34, resnet50, .*got 'vgg16'"):
        HANet("vgg16")
    assert {"resnet18", "resnet34", "resnet50", "resnet101"} <= set(BACKBONES)


@pytest.mark.parametrize("stages", [(), (0,), (5,), (2, 2), (2.0, 3)])
def test_rejects_bad_nfe_stages(stages):
    with pytest.raises(ValueError, match="nfe_stages"):
        HANet("resnet18", nfe_stages=stages)


def test_rejects_nfe_stages_given_as_a_string():
    with pytest.raises(TypeError, match="nfe_stages"):
        HANet("resnet18", nfe_stages="234")


@pytest.mark.parametrize("shape", [(2, 1, 64, 32), (3, 64, 32), (2, 3, 64, 32, 1)])
def test_rejects_images_of_the_wrong_shape(shape):
    with pytest.raises(ValueError, match=r"images should be \[U, 3, H, W\]"):
        HANet("resnet18")(torch.randn(shape))


def test_rejects_integer_images():
    with pytest.raises(TypeError, match="images should be a floating-point"):
        HANet("resnet18")(torch.zeros(2, 3, 64, 32, dtype=torch.uint8))


def test_rejects_an_empty_image_batch():
    with pytest.raises(ValueError, match="images should hold at least one image"):
        HANet("resnet18")(torch.zeros(0, 3, 64, 32))


def test_rejects_lo_not_below_hi_even_without_nfa():
    with pytest.raises(ValueError, match="lo and hi"):
        HANet("resnet18", use_nfa=False, lo=0.5, hi=0.5)
