"""HA-Net's pretrained backbones: model.weights=imagenet (torchvision's ImageNet weights, fetched
through torch.hub) and a local state-dict file. No test touches the network: the download is
replaced by monkeypatching torch.hub.load_state_dict_from_url."""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision.models as tvm

from hdml_ext.nn import HANet
from hdml_ext.nn.hanet import IMAGENET, PretrainedWeightsError, imagenet_state_dict


def _no_network(url, **kwargs):
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


def test_imagenet_without_network_fails_with_one_line_naming_the_local_file_setting(monkeypatch):
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _no_network)
    with pytest.raises(PretrainedWeightsError) as error:
        HANet("resnet18", weights=IMAGENET)
    message = str(error.value)
    assert "\n" not in message
    assert "--set model.weights=/path/to/resnet18-f37072fd.pth" in message
    assert "Temporary failure in name resolution" in message


def test_imagenet_loads_torchvisions_weights_for_the_chosen_backbone(monkeypatch):
    torch.manual_seed(0)
    source = tvm.resnet18(weights=None)
    asked = []

    def fake_download(url, **kwargs):
        asked.append(url)
        return source.state_dict()

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    hanet = HANet("resnet18", nfe_stages=(2, 3), weights=IMAGENET)
    assert asked == [tvm.ResNet18_Weights.IMAGENET1K_V1.url]
    assert torch.equal(hanet.backbone.conv1.weight, source.conv1.weight)
    assert torch.equal(hanet.backbone.layer3[1].bn2.running_var, source.layer3[1].bn2.running_var)
    assert hanet(torch.randn(2, 3, 32, 16)).shape == (2, 1024)


def test_imagenet_url_follows_the_backbone(monkeypatch):
    asked = []
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda url, **kwargs: asked.append(url) or {})
    imagenet_state_dict("resnet50")
    assert asked == [tvm.ResNet50_Weights.IMAGENET1K_V1.url]


def test_a_state_dict_saved_from_torchvisions_constructor_starts_the_backbone(tmp_path):
    torch.manual_seed(1)
    source = tvm.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    hanet = HANet("resnet18", nfe_stages=(2, 3, 4), weights=str(path)).eval()
    for name, value in hanet.backbone.state_dict().items():
        assert torch.equal(value, source.state_dict()[name]), name
    images = torch.randn(2, 3, 16, 8)
    source.eval()
    expected = source.layer1(source.maxpool(source.relu(source.bn1(source.conv1(images)))))
    assert torch.allclose(hanet.backbone.layer1(hanet.backbone.stem(images)), expected)
    assert hanet(images).shape == (2, 1536)
