"""ONNX export of the embedding network: ONNX Runtime matches PyTorch at any batch size, and the
NFA gate is in the graph as its registered translation (standard ONNX ops), clamps included."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from torch import nn

from hdml_ext import ops
from hdml_ext.nn import HDML, HANet, HDMLOnFeatures

_MISSING = [name for name in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(name) is None]
pytestmark = pytest.mark.skipif(
    bool(_MISSING), reason=f"ONNX export needs {', '.join(_MISSING)} (pip install 'hdml_ext[export]')"
)

HEIGHT, WIDTH = 64, 32
LO, HI = 0.3, 0.9


def _tiny_hanet() -> HANet:
    """resnet18 HA-Net whose NFA biases are spread wide, so that on random images some gates
    fall below lo and some above hi (both clamps are exercised)."""
    torch.manual_seed(0)
    network = HANet("resnet18", lo=LO, hi=HI)
    with torch.no_grad():
        for block in network.nfa:
            block.fc.bias.normal_(0.0, 3.0)
    return network.eval()


def _gates(network: HANet, images: torch.Tensor) -> list[torch.Tensor]:
    """sigmoid(logits) of each NFA block on `images` (before clamping)."""
    seen: list[torch.Tensor] = []

    def record(block: nn.Module, args: tuple, out: torch.Tensor) -> None:
        seen.append(torch.sigmoid(block.logits(args[0])))

    hooks = [block.register_forward_hook(record) for block in network.nfa]
    try:
        with torch.no_grad():
            network(images)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from hdml_ext.engine.onnx_export import export_embedding_onnx

    network = _tiny_hanet()
    record = {"height": HEIGHT, "width": WIDTH, "mean": [0.5] * 3, "std": [0.25] * 3}
    path = export_embedding_onnx(network, tmp_path_factory.mktemp("onnx") / "hanet.onnx", height=HEIGHT,
                                 width=WIDTH, input_record=record)
    return network, path


@pytest.mark.parametrize("batch", [1, 5])
def test_onnxruntime_matches_pytorch_at_two_batch_sizes(exported, batch):
    from hdml_ext.engine.onnx_export import run_onnxruntime

    network, path = exported
    images = torch.randn(batch, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(batch))
    gates = torch.cat([g.flatten() for g in _gates(network, images)])
    assert (gates < LO).any() and (gates > HI).any(), "both clamps of the gate should be exercised"
    with torch.no_grad():
        expected = network(images).numpy()
    got = run_onnxruntime(path, images)
    assert got.shape == (batch, network.out_dim)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_graph_holds_the_gate_ops_in_standard_onnx(exported):
    import onnx

    network, path = exported
    graph = onnx.load(str(path)).graph
    ops_used = [node.op_type for node in graph.node]
    gates = len(network.nfa)
    # Each gate: Sigmoid, Less (g < lo), Greater (g > hi), two Where; nothing else in ResNet
    # or NFE produces Less, Greater or Where.
    assert ops_used.count("Less") == gates
    assert ops_used.count("Greater") == gates
    assert ops_used.count("Where") == 2 * gates
    assert ops_used.count("Sigmoid") == gates
    assert {node.domain for node in graph.node} <= {"", "ai.onnx"}, "no custom-op domain should remain"
    batch_axis = graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_axis.dim_param and not batch_axis.HasField("dim_value"), "the batch axis should be dynamic"


def test_metadata_records_the_input_pipeline(exported):
    from hdml_ext.engine.onnx_export import onnx_metadata

    network, path = exported
    metadata = onnx_metadata(path)
    assert metadata["embedding_dim"] == network.out_dim
    assert metadata["input"] == {"height": HEIGHT, "width": WIDTH, "mean": [0.5] * 3, "std": [0.25] * 3}


def test_compare_with_onnxruntime_of_an_hdml_model(exported):
    from hdml_ext.engine.onnx_export import compare_with_onnxruntime

    network, path = exported
    model = HDML(3, backbone="resnet18", k=2, gcn_dims=[8])
    model.hanet.load_state_dict(network.state_dict())
    model.train()
    images = torch.randn(3, 3, HEIGHT, WIDTH)
    assert compare_with_onnxruntime(model, path, images) < 1e-4
    assert model.training, "the caller's model should keep its mode"


def test_a_model_of_features_is_refused(tmp_path):
    from hdml_ext.engine.onnx_export import export_embedding_onnx

    with pytest.raises(ValueError, match="HA-Net"):
        export_embedding_onnx(HDMLOnFeatures(4, k=2, gcn_dims=[4]), tmp_path / "m.onnx", height=8, width=8)
    assert not (tmp_path / "m.onnx").exists()


class _Gate(nn.Module):
    def forward(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return ops.nfa_gate(x, logits, LO, HI)


@pytest.mark.parametrize(("shape", "dtype"), [((3, 5), torch.float32), ((3, 5, 7), torch.float32),
                                              ((2, 4, 3, 5), torch.float64)])
def test_gate_translation_matches_the_kernel(tmp_path, shape, dtype):
    import onnxruntime

    from hdml_ext.ops.nfa_gate import onnx_translation

    generator = torch.Generator().manual_seed(len(shape))
    x = torch.randn(shape, dtype=dtype, generator=generator)
    logits = 3 * torch.randn(shape[:2], dtype=dtype, generator=generator)
    program = torch.onnx.export(_Gate().eval(), (x, logits), dynamo=True, input_names=["x", "logits"],
                                custom_translation_table=onnx_translation(), verbose=False)
    program.save(str(tmp_path / "gate.onnx"))
    session = onnxruntime.InferenceSession(str(tmp_path / "gate.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x.numpy(), "logits": logits.numpy()})[0]
    assert got.dtype == x.numpy().dtype
    np.testing.assert_allclose(got, ops.nfa_gate(x, logits, LO, HI).numpy(), rtol=1e-6, atol=1e-6)
