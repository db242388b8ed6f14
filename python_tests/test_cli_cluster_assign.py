"""`hdml cluster --assign-to RUN`: an earlier output folder keeps its embeddings and kNN table,
and new rows take its clusters (or new ones) without re-clustering the old rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hdml_ext.cli import main
from hdml_ext.cluster.assign import assign_to_clusters
from hdml_ext.engine import load_model

SETTINGS = ["--set", "model.k=3", "--set", "model.gcn_dims=[8]", "--set", "train.epochs=2",
            "--set", "train.device=cpu", "--set", "cluster.device=cpu", "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def clustered(tmp_path_factory):
    """A features model, its clustering of 24 old rows (folder "old"), and 8 new rows."""
    root = tmp_path_factory.mktemp("assign")
    rng = np.random.default_rng(0)
    centres = 4 * rng.normal(size=(4, 5))
    old_truth, new_truth = np.repeat(np.arange(4), 6), np.repeat(np.arange(4), 2)
    for name, truth in (("old", old_truth), ("new", new_truth)):
        np.save(root / f"{name}.npy", (centres[truth] + rng.normal(size=(truth.size, 5))).astype(np.float32))
        np.save(root / f"{name}_y.npy", truth)
    data = ["--dataset", "features", "--root", str(root / "old.npy"), "--labels", str(root / "old_y.npy")]
    assert main(["train", *data, "--out", str(root / "run"), *SETTINGS]) == 0
    assert main(["cluster", "--checkpoint", str(root / "run" / "model.pt"), *data, "--out", str(root / "old"),
                 *SETTINGS]) == 0  # fmt: skip
    return root


def test_cluster_saves_what_a_later_assignment_needs(clustered):
    embeddings = np.load(clustered / "old" / "embeddings.npy")
    assert np.array_equal(embeddings, np.load(clustered / "old.npy"))
    knn = np.load(clustered / "old" / "knn.npy")
    assert knn.shape == (24, 3) and knn.dtype == np.int64


def test_new_rows_take_the_clusters_assign_to_clusters_gives(clustered, capsys):
    model = str(clustered / "run" / "model.pt")
    before = np.load(clustered / "old" / "labels.npy")
    new = ["--dataset", "features", "--root", str(clustered / "new.npy"),
           "--labels", str(clustered / "new_y.npy")]  # fmt: skip
    capsys.readouterr()
    assert main(["cluster", "--checkpoint", model, *new, "--assign-to", str(clustered / "old"),
                 "--out", str(clustered / "assigned"), *SETTINGS]) == 0  # fmt: skip
    out = capsys.readouterr().out
    labels = np.load(clustered / "assigned" / "labels.npy")
    expected = assign_to_clusters(
        load_model(model), torch.from_numpy(np.load(clustered / "new.npy")),
        torch.from_numpy(np.load(clustered / "old.npy")), before, threshold=0.5,
        old_knn=torch.from_numpy(np.load(clustered / "old" / "knn.npy")),
    )  # fmt: skip
    assert np.array_equal(labels, expected.labels)
    assert f"{int(expected.joined.sum())} of 8 new rows joined clusters of" in out
    assert np.array_equal(np.load(clustered / "old" / "labels.npy"), before)  # the old rows are untouched
    assert (clustered / "assigned" / "metrics.json").is_file()
    assert not (clustered / "assigned" / "knn.npy").exists()


def test_a_folder_without_embeddings_is_a_usage_error(clustered, tmp_path, capsys):
    np.save(tmp_path / "labels.npy", np.zeros(24, dtype=np.int64))
    new = ["--dataset", "features", "--root", str(clustered / "new.npy")]
    with pytest.raises(SystemExit) as exit_info:
        main(["cluster", "--checkpoint", str(clustered / "run" / "model.pt"), *new,
              "--assign-to", str(tmp_path), "--out", str(tmp_path / "out"), *SETTINGS])  # fmt: skip
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --assign-to" in err and "it lacks embeddings.npy" in err
