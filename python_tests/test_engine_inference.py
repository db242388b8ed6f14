"""Embedding rows for inference (hdml_ext.engine.inference.embed_rows)."""

from __future__ import annotations

import torch

from hdml_ext.data import TensorImageDataset
from hdml_ext.engine import embed_rows
from hdml_ext.nn import HDML, HDMLOnFeatures


def test_features_are_their_own_embeddings():
    features = torch.randn(10, 6, dtype=torch.float64)
    model = HDMLOnFeatures(6, k=3, gcn_dims=(4,))
    out = embed_rows(model, features, batch_size=3)
    assert out.dtype == torch.float32 and torch.equal(out, features.float())
    rows = torch.tensor([7, 2])
    assert torch.equal(embed_rows(model, features, rows=rows), features[rows].float())


def test_images_are_embedded_in_eval_mode_batch_by_batch():
    torch.manual_seed(0)
    model = HDML(3, backbone="resnet18", k=3, nfe_stages=(2,), gcn_dims=(4,)).train()
    images = torch.randn(7, 3, 32, 16)
    out = embed_rows(model, images, batch_size=3)
    assert model.training  # restored
    with torch.no_grad():
        expected = model.eval().embed(images)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    dataset = TensorImageDataset(images, torch.zeros(7, dtype=torch.int64))
    from_workers = embed_rows(model, dataset, batch_size=3, num_workers=1, rows=torch.tensor([6, 0, 3]))
    torch.testing.assert_close(from_workers, out[[6, 0, 3]], rtol=1e-4, atol=1e-5)
