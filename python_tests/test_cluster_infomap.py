"""hdml_ext.cluster.infomap: the wrapper against the `infomap` package called directly, and the
Infomap floor's validation search."""

from __future__ import annotations

import infomap
import numpy as np
import pytest

from hdml_ext.cluster import choose_infomap, cosine_knn_edges, infomap_edges, infomap_knn
from hdml_ext.cluster.infomap import INFOMAP_OPTIONS
from hdml_ext.metrics import nmi

# Two directed triangles joined by one weak link, and node 6 with no link.
SRC = np.array([0, 1, 2, 3, 4, 5, 2])
DST = np.array([1, 2, 0, 4, 5, 3, 3])
WEIGHT = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.05])


def test_two_triangles_by_hand():
    labels, info = infomap_edges(7, SRC, DST, WEIGHT)
    np.testing.assert_array_equal(labels, [0, 0, 0, 1, 1, 1, 2])
    assert info["num_clusters"] == 3 and info["num_links"] == 7


def test_floor_self_links_and_non_positive_scores_are_dropped():
    src, dst = np.append(SRC, [4, 1]), np.append(DST, [4, 3])
    score = np.append(WEIGHT, [1.0, -0.5])  # a self-link, a negative score
    labels, info = infomap_edges(7, src, dst, score, min_score=0.5)
    assert info["num_links"] == 6  # the weak link, the self-link and the negative one are out
    np.testing.assert_array_equal(labels, [0, 0, 0, 1, 1, 1, 2])


def test_no_edge_leaves_singletons():
    labels, info = infomap_edges(3, [0], [1], [0.2], min_score=0.5)
    np.testing.assert_array_equal(labels, [0, 1, 2])
    assert info["num_links"] == 0


def _direct(num_nodes, src, dst, score, seed, folder):
    """face-cluster-by-infomap's way, with the `infomap` package called directly (its modules
    written as a .clu file: iterating them through SWIG can crash beside faiss, swig#2913)."""
    runner = infomap.Infomap(INFOMAP_OPTIONS, silent=True, seed=seed, num_trials=1)
    for i, j, w in zip(src.tolist(), dst.tolist(), score.tolist()):
        runner.add_link(i, j, w)
    runner.run()
    runner.write_clu(str(folder / "direct.clu"))
    labels = np.full(num_nodes, -1)
    for line in (folder / "direct.clu").read_text().splitlines():
        if line and not line.startswith("#"):
            node, module = line.split()[:2]
            labels[int(node)] = int(module)
    lonely = labels < 0
    labels[lonely] = labels.max() + 1 + np.arange(lonely.sum())
    return labels


@pytest.mark.parametrize("seed", [1, 7])
def test_matches_the_package_called_directly(seed, tmp_path):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(6), 10)
    features = rng.normal(size=(60, 8)) + 2.5 * rng.normal(size=(6, 8))[groups]
    src, dst, cosine = cosine_knn_edges(features, 6)
    keep = cosine >= 0.3
    expected = _direct(60, src[keep], dst[keep], cosine[keep], seed, tmp_path)
    labels, _ = infomap_edges(60, src, dst, cosine, min_score=0.3, seed=seed)
    # The same partition (the wrapper only renumbers the modules).
    assert nmi(expected, labels) == pytest.approx(1.0)
    assert len(np.unique(labels)) == len(np.unique(expected))
    np.testing.assert_array_equal(infomap_knn(features, 6, min_score=0.3, seed=seed)[0], labels)


def test_cosine_knn_edges_are_cosine_neighbours():
    features = np.array([[1.0, 0.0], [10.0, 1.0], [0.0, 1.0], [0.1, 5.0]])
    src, dst, cosine = cosine_knn_edges(features, 1)
    np.testing.assert_array_equal(src, [0, 1, 2, 3])
    np.testing.assert_array_equal(dst, [1, 0, 3, 2])  # by angle, not by Euclidean distance
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    np.testing.assert_allclose(cosine, (unit[src] * unit[dst]).sum(1), rtol=1e-6)


def test_choose_infomap_searches_quantiles_of_the_scores():
    labels = np.array([0, 0, 0, 1, 1, 1, 2])
    # Candidate floors: the 0 and 0.5 quantiles of the weights, 0.05 and 1.0. Both recover the
    # triangles exactly; a tie keeps the lowest floor.
    floor, metrics = choose_infomap((SRC, DST, WEIGHT), labels, np.array([0.0, 0.5]))
    assert metrics["nmi"] == pytest.approx(1.0) and floor == pytest.approx(0.05)
    # Floor 2.0, above the triangles' weights, keeps only the wrong link 2 -> 3: it scores lower.
    floor, _ = choose_infomap((SRC, DST, WEIGHT * np.array([1, 1, 1, 1, 1, 1, 40])), labels,
                              np.array([0.0, 1.0]))
    assert floor == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least one edge"):
        choose_infomap((SRC[:0], DST[:0], WEIGHT[:0]), labels[:0])


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="dst"):
        infomap_edges(2, [0], [5], [1.0])
    with pytest.raises(ValueError, match="min_score"):
        infomap_edges(2, [0], [1], [1.0], min_score=float("inf"))
    with pytest.raises(ValueError, match="score"):
        infomap_edges(2, [0], [1], [1.0, 2.0])


def test_runs_with_faiss_loaded_in_the_same_process():
    """faiss and infomap are both SWIG-wrapped; reading Infomap's modules through its SWIG
    iterator with faiss imported after infomap crashed the process (swig/swig#2913). In a fresh
    process, as a crash would take pytest with it."""
    import subprocess
    import sys

    code = (
        "import infomap, faiss\n"  # this order crashed the old reading of the modules
        "from hdml_ext.cluster import infomap_edges\n"
        "labels, info = infomap_edges(6, [0, 1, 2, 3, 4, 5], [1, 2, 0, 4, 5, 3], [1.0] * 6)\n"
        "print(labels.tolist(), info['num_clusters'])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[0, 0, 0, 1, 1, 1] 2"
