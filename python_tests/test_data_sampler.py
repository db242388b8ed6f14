"""The F-Graph sampler: PK focus batches and their collation (hdml_ext.data.sampler)."""

from __future__ import annotations

import logging

import pytest
import torch

from hdml_ext.data import FGraphSampler, read_rows
from hdml_ext.data.sampler import search_plan
from hdml_ext.graph import FGraphs, build_fgraphs, fgraph_nodes, largest_k
from hdml_ext.ops import reference


def _data(num_classes: int = 5, per_class: int = 7, dim: int = 6, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    labels = labels[torch.randperm(labels.numel(), generator=gen)]
    features = torch.randn(labels.numel(), dim, generator=gen, dtype=torch.float64) + 3.0 * labels[:, None]
    images = torch.randn(labels.numel(), 3, 4, 2, generator=gen)
    return labels, features, images


def _sampler(labels, features, k=4, p=3, kk=2, seed=0):
    sampler = FGraphSampler(labels, k, identities_per_batch=p, focus_per_identity=kk, seed=seed)
    sampler.rebuild(features)
    return sampler


def test_rebuild_uses_the_knn_of_the_embeddings():
    labels, features, _ = _data()
    sampler = _sampler(labels, features)
    _, expected = reference.knn(features, 4)
    assert torch.equal(sampler.fgraphs.knn_idx, expected)
    assert sampler.fgraphs.knn_dist.shape == (labels.numel(), 4)


def test_collate_focus_first_and_neighbours_from_the_table():
    labels, features, _ = _data()
    sampler = _sampler(labels, features)
    focus = torch.tensor([3, 0, 17, 3])
    batch = sampler.collate(focus)
    global_nodes = batch.image_ids[batch.nodes]
    assert torch.equal(global_nodes[:, 0], focus)
    assert torch.equal(global_nodes[:, 1:], sampler.fgraphs.knn_idx[focus])
    assert torch.equal(global_nodes, fgraph_nodes(sampler.fgraphs.knn_idx, focus))
    assert torch.equal(batch.adj, reference.fgraph_adjacency(sampler.fgraphs.knn_idx, focus, symmetric=False))
    assert torch.equal(batch.focus, focus)


def test_collate_unique_images_remap_consistently():
    labels, features, images = _data()
    sampler = _sampler(labels, features)
    focus = sampler.focus_batches(0)[0]
    batch = sampler.collate(focus)
    rows = read_rows(images, batch.image_ids)
    # Each distinct image once, ascending; rows[nodes] are the original images of the node ids.
    assert torch.equal(batch.image_ids, torch.unique(batch.image_ids))
    assert rows.shape[0] == batch.image_ids.numel() == batch.labels.numel()
    global_nodes = fgraph_nodes(sampler.fgraphs.knn_idx, focus)
    assert torch.equal(rows[batch.nodes], images[global_nodes])
    assert torch.equal(batch.labels, labels[batch.image_ids])
    assert torch.equal(batch.labels[batch.nodes], labels[global_nodes])


def test_pk_composition_and_epoch_coverage():
    labels, features, _ = _data(num_classes=5, per_class=7)
    p, kk = 3, 2
    sampler = _sampler(labels, features, p=p, kk=kk)
    batches = sampler.focus_batches(0)
    seen = torch.cat(batches)
    # Every row is a focus node at least once per epoch.
    assert set(seen.tolist()) == set(range(labels.numel()))
    multi_identity = 0
    for focus in batches:
        assert focus.unique().numel() == focus.numel(), "no repeated focus within a batch"
        classes, counts = labels[focus].unique(return_counts=True)
        assert classes.numel() <= p
        assert int(counts.max()) <= kk
        multi_identity += classes.numel() > 1
    # The epoch's batches hold several identities (all but possibly the last ones).
    assert multi_identity >= len(batches) - 2
    full = [f for f in batches if labels[f].unique().numel() == p]
    assert full and all(f.numel() == p * kk for f in full)


def test_batches_are_a_function_of_seed_and_epoch():
    labels, features, _ = _data()
    a = _sampler(labels, features, seed=3)
    b = _sampler(labels, features, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.focus_batches(1), b.focus_batches(1)))
    assert any(not torch.equal(x, y) for x, y in zip(a.focus_batches(1), a.focus_batches(2)))
    # The global RNG plays no part.
    torch.manual_seed(123)
    first = a.focus_batches(4)
    torch.manual_seed(456)
    assert all(torch.equal(x, y) for x, y in zip(first, a.focus_batches(4)))


def test_small_identities_give_one_group():
    labels = torch.tensor([0, 0, 0, 0, 0, 1, 2, 2])
    features = torch.randn(8, 3)
    sampler = _sampler(labels, features, k=3, p=3, kk=4)
    batches = sampler.focus_batches(0)
    for focus in batches:
        assert int(labels[focus].eq(1).sum()) <= 1
        assert int(labels[focus].eq(2).sum()) <= 2
    assert set(torch.cat(batches).tolist()) == set(range(8))


def test_drop_last_drops_batches_short_of_identities():
    labels, features, _ = _data(num_classes=3, per_class=6)
    sampler = FGraphSampler(labels, 3, identities_per_batch=3, focus_per_identity=4, drop_last=True)
    sampler.rebuild(features)
    for focus in sampler.focus_batches(0):
        assert labels[focus].unique().numel() == 3


def test_state_dict_round_trip():
    labels, features, _ = _data()
    sampler = _sampler(labels, features)
    other = FGraphSampler(labels, 4, identities_per_batch=3, focus_per_identity=2)
    other.load_state_dict(sampler.state_dict())
    assert torch.equal(other.fgraphs.knn_idx, sampler.fgraphs.knn_idx)


def test_rebuild_with_another_backend_gives_the_same_batches():
    labels, features, _ = _data()
    exact = _sampler(labels, features)
    flat = FGraphSampler(labels, 4, identities_per_batch=3, focus_per_identity=2, backend="faiss-flat")
    flat.rebuild(features)
    assert flat.fgraphs.backend == "faiss-flat" and exact.fgraphs.backend == "exact"
    assert torch.equal(flat.fgraphs.knn_idx, exact.fgraphs.knn_idx)
    focus = exact.focus_batches(0)[0]
    assert all(torch.equal(a, b) for a, b in zip(flat.collate(focus), exact.collate(focus)))


CUDA = torch.device("cuda")


def test_search_plan_keeps_within_the_cuda_knn_limit(caplog):
    # ops.knn's CUDA kernel takes k <= 1016: the wide search (4k) met it at k > 254 on a GPU.
    assert largest_k("exact", CUDA) == 1016 and largest_k("auto", CUDA) == largest_k("ivf", CUDA) == 1015
    assert largest_k("exact", "cpu") is None and largest_k("faiss-flat", CUDA) is None
    assert search_plan(300, 1200, torch.device("cpu"), "exact") == (1200, torch.device("cpu"))
    assert search_plan(300, 1200, CUDA, "faiss-hnsw") == (1200, CUDA)
    with caplog.at_level(logging.WARNING, logger="hdml_ext.data.sampler"):
        assert search_plan(300, 1200, CUDA, "exact") == (1016, CUDA)
        assert search_plan(1100, 1100, CUDA, "auto") == (1100, torch.device("cpu"))
    messages = [record.getMessage() for record in caplog.records]
    assert "searching 1016 neighbours per row, not 1200" in messages[0]
    assert "k = 1100 is above the auto kNN backend's CUDA limit 1015: searching on the CPU" in messages[1]


def test_rebuild_narrows_the_wide_search_to_the_devices_limit(monkeypatch):
    labels, features, _ = _data()
    import hdml_ext.data.sampler as sampler_module

    asked = []
    build = sampler_module.build_fgraphs
    monkeypatch.setattr(sampler_module, "largest_k", lambda backend, device: 10)  # as CUDA's 1016
    monkeypatch.setattr(sampler_module, "build_fgraphs",
                        lambda rows, k, *, backend: asked.append(k) or build(rows, k, backend=backend))
    sampler = FGraphSampler(labels, 4, max_positive_share=0.5)
    sampler.rebuild(features)
    assert asked == [10] and sampler.fgraphs.k == 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU present")
def test_wide_search_on_cuda_past_the_kernels_k():
    labels = torch.arange(1500) % 50
    features = torch.randn(1500, 8, device="cuda") + labels[:, None].cuda().float()
    sampler = FGraphSampler(labels, 300, max_positive_share=0.5)
    sampler.rebuild(features)
    assert sampler.fgraphs.k == 300


def test_set_fgraphs_and_set_table_use_tables_built_elsewhere():
    labels, features, _ = _data()
    graphs = build_fgraphs(features, 4, backend="exact")
    sampler = FGraphSampler(labels, 4)
    sampler.set_fgraphs(graphs)
    assert torch.equal(sampler.fgraphs.knn_idx, graphs.knn_idx)
    other = FGraphSampler(labels, 4)
    other.set_table(graphs.knn_idx, graphs.knn_dist)
    assert torch.equal(other.collate([0, 3]).adj, sampler.collate([0, 3]).adj)
    with pytest.raises(ValueError, match=r"fgraphs should have \[N, k\] = \[35, 3\] tables, got \[35, 4\]"):
        FGraphSampler(labels, 3).set_fgraphs(graphs)
    with pytest.raises(TypeError, match=r"fgraphs should be an hdml_ext\.graph\.FGraphs"):
        sampler.set_fgraphs(graphs.knn_idx)
    with pytest.raises(TypeError, match=r"knn_idx should have dtype torch\.int64"):
        sampler.set_table(graphs.knn_idx.int(), graphs.knn_dist)
    assert isinstance(sampler.fgraphs, FGraphs)


def test_state_dict_keeps_its_keys_and_restores_no_table():
    labels, features, _ = _data()
    state = _sampler(labels, features).state_dict()
    assert set(state) == {"k", "seed", "knn_idx", "knn_dist"}
    empty = FGraphSampler(labels, 4)
    assert empty.state_dict()["knn_idx"] is None
    restored = FGraphSampler(labels, 4)
    restored.load_state_dict(state)
    restored.load_state_dict(empty.state_dict())
    assert restored.fgraphs is None


def test_error_unknown_backend():
    labels, _, _ = _data()
    with pytest.raises(ValueError, match="backend should be one of auto, exact"):
        FGraphSampler(labels, 3, backend="annoy")


def test_error_k_too_large():
    labels, _, _ = _data(num_classes=2, per_class=3)
    with pytest.raises(ValueError, match="k should be at most N - 1 = 5"):
        FGraphSampler(labels, 6)


def test_error_collate_before_rebuild():
    labels, _, _ = _data()
    with pytest.raises(RuntimeError, match="rebuild"):
        FGraphSampler(labels, 3).collate([0])


def test_error_negative_labels():
    with pytest.raises(ValueError, match="labels should be >= 0"):
        FGraphSampler(torch.tensor([0, -1, 1, 1]), 2)


def test_error_float_labels():
    with pytest.raises(TypeError, match="labels"):
        FGraphSampler(torch.tensor([0.0, 1.0, 1.0]), 1)


def test_error_embeddings_row_count():
    labels, features, _ = _data()
    sampler = FGraphSampler(labels, 3)
    with pytest.raises(ValueError, match="embeddings should have one row per label"):
        sampler.rebuild(features[:-1])


def test_error_focus_out_of_range():
    labels, features, _ = _data()
    sampler = _sampler(labels, features)
    with pytest.raises(ValueError, match="focus ids should lie in"):
        sampler.collate([0, labels.numel()])


def test_error_empty_focus():
    labels, features, _ = _data()
    with pytest.raises(ValueError, match="focus should hold at least one"):
        _sampler(labels, features).collate([])


def test_error_state_with_other_k():
    labels, features, _ = _data()
    state = _sampler(labels, features).state_dict()
    with pytest.raises(ValueError, match="k=4"):
        FGraphSampler(labels, 3).load_state_dict(state)
