"""User errors of the `hdml` command (issue 12, items 5 and 6): each is one line naming the
argument, what was expected and what came, exit code 2, and nothing written in --out. The
cases run through the real entry point, `python -m hdml_ext.cli`, in one subprocess."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cli_batch import run_hdml_batch
from PIL import Image

from hdml_ext.cli import main

FEATURES = ["--dataset", "features", "--root", "f.npy", "--labels", "y.npy"]
SMALL = [
    "--quiet", "--set", "model.k=3", "--set", "model.gcn_dims=[8]", "--set", "train.epochs=1",
    "--set", "train.device=cpu", "--set", "eval.device=cpu", "--set", "cluster.device=cpu",
]  # fmt: skip
DIGITS = ["--dataset", "digits", "--set", "data.height=8", "--set", "data.width=8",
          "--set", "model.backbone=resnet18"]  # fmt: skip
FEATURE_MODEL = "run/model.pt"
CLUSTER = ["cluster", *FEATURES, "--checkpoint", FEATURE_MODEL, "--out", "{out}", *SMALL]

#: (command line with {out} for the output, the argument the error names, text it holds)
CASES = [
    ([*CLUSTER, "--set", "eval.k=0"],
     "--set", "eval.k should be an int >= 1 or null (the model's k), got 0"),
    ([*CLUSTER, "--set", "eval.k=-2"],
     "--set", "eval.k should be an int >= 1 or null (the model's k), got -2"),
    ([*CLUSTER, "--set", "eval.k=abc"],
     "--set", "eval.k should be an int or null, got 'abc'"),
    (["evaluate", *DIGITS, "--checkpoint", FEATURE_MODEL, "--out", "{out}/r.json", *SMALL,
      "--set", "eval.max_rank=0"], "--set", "eval.max_rank should be an int >= 1, got 0"),
    (["evaluate", *DIGITS, "--checkpoint", FEATURE_MODEL, "--out", "{out}/r.json", *SMALL,
      "--set", "eval.batch_size=0"], "--set", "eval.batch_size should be an int >= 1, got 0"),
    (["evaluate", *DIGITS, "--checkpoint", FEATURE_MODEL, "--out", "{out}/r.json", *SMALL,
      "--set", "eval.embed_batch_size=0"], "--set", "eval.embed_batch_size should be an int >= 1, got 0"),
    (["train", *FEATURES, "--out", "{out}", *SMALL, "--set", "train.device=tpu"],
     "--set", "train.device should be auto, cpu, mps, cuda or cuda:INDEX, got 'tpu'"),
    (["train", *FEATURES, "--out", "{out}", *SMALL, "--set", "data.height=0"],
     "--set", "data.height should be an int >= 1, got 0"),
    (["train", *FEATURES, "--out", "{out}", *SMALL, "--set", "data.height=-5"],
     "--set", "data.height should be an int >= 1, got -5"),
    (["train", *DIGITS, "--out", "{out}", *SMALL, "--set", "data.train_fraction=1.5"],
     "--set", "data.train_fraction should be a fraction in (0, 1), got 1.5"),
    (["train", *DIGITS, "--out", "{out}", *SMALL, "--set", "data.train_fraction=0"],
     "--set", "data.train_fraction should be a fraction in (0, 1), got 0"),
    (["train", *DIGITS, "--out", "{out}", *SMALL, "--set", "model.weights=missing.pt"],
     "--set", "model.weights should be 'imagenet' or a state-dict file's path, no file at 'missing.pt'"),
    (["train", *DIGITS, "--out", "{out}", *SMALL, "--resume", "run/checkpoint.pt"],
     "--resume", "the checkpoint's model takes features, --dataset digits gives images"),
    (["train", "--dataset", "features", "--root", "f6.npy", "--labels", "y.npy", "--out", "{out}", *SMALL,
      "--resume", "run/checkpoint.pt"], "--resume", "takes features of width 5, --root holds width 6"),
    (["train", *FEATURES, "--out", "afile", *SMALL],
     "--out", "should be a folder, got the existing file 'afile'"),
    (["cluster", *FEATURES, "--checkpoint", FEATURE_MODEL, "--out", "afile", *SMALL],
     "--out", "should be a folder, got the existing file 'afile'"),
    (["train", "--dataset", "features", "--root", "fnan.npy", "--labels", "y.npy", "--out", "{out}", *SMALL],
     "--root", "features should be finite, but 1 of the 18 rows of fnan.npy hold NaN or Inf (first: row 3)"),
    (["train", "--dataset", "features", "--root", "finf.npy", "--labels", "y.npy", "--out", "{out}", *SMALL],
     "--root", "hold NaN or Inf (first: row 7)"),
    (["train", "--dataset", "image-folder", "--root", "jpg", "--out", "{out}", *DIGITS[2:], *SMALL],
     "--root", "could not read the image jpg/a/0.jpg"),
    (["train", "--dataset", "image-folder", "--root", "png", "--out", "{out}", *DIGITS[2:], *SMALL],
     "--root", "could not read the image png/a/0.png"),
    (["cluster", "--dataset", "image-folder", "--root", "jpg", "--checkpoint", "digits_run/model.pt",
      "--out", "{out}", *SMALL], "--root", "could not read the image jpg/a/0.jpg"),
    # issue 12, item 6: messages that blamed the wrong argument or said the wrong thing
    (["cluster", "--dataset", "features", "--root", "fnan.npy", "--checkpoint", FEATURE_MODEL,
      "--out", "{out}", *SMALL], "--root", "features should be finite"),
    (["train", "--dataset", "features", "--root", "raw.bin", "--labels", "y.npy", "--out", "{out}", *SMALL],
     "--root", "raw.bin is not a .npy file (no NumPy header); raw float32 rows are --dataset bin"),
    (["train", "--dataset", "bin", "--root", "raw.bin", "--dim", "5", "--labels", "short.meta",
      "--out", "{out}", *SMALL],
     "--labels", "should hold one label per feature row: raw.bin holds 18 rows, short.meta holds 4"),
    (["train", *FEATURES, "--out", "{out}", "--config", "zero_epochs.yaml"],
     "--config", "train.epochs should be an int >= 1, got 0"),
    (["train", "--dataset", "market1501", "--root", "market", "--out", "{out}", *SMALL],
     "--root", "the training split of 'market' holds no rows"),
    ([*CLUSTER, "--set", "cluster.threshold=-0.5"],
     "--set", "cluster.threshold should be a number in [0, 1], got -0.5"),
    ([*CLUSTER, "--set", "cluster.threshold=2"],
     "--set", "cluster.threshold should be a number in [0, 1], got 2"),
    ([*CLUSTER, "--set", "cluster.k=abc"],
     "--set", "cluster.k should be an int or null, got 'abc'"),
    (["evaluate", *DIGITS, "--root", "market", "--checkpoint", "digits_run/model.pt", *SMALL],
     "--root", "the digits data set is embedded and takes no --root, got 'market'"),
    (["evaluate", *DIGITS, "--checkpoint", "digits_run/model.pt", *SMALL, "--set", "eval.k=5"],
     "--set", "eval.k = 5 differs from the model's k = 3"),
    (["train", *DIGITS, "--dim", "4", "--out", "{out}", *SMALL], "--dim", "takes no --dim, got 4"),
    (["cluster", *FEATURES, "--checkpoint", "random.pt", "--out", "{out}", *SMALL],
     "--checkpoint", "'random.pt' is not a checkpoint written by hdml"),
]  # fmt: skip

if not torch.cuda.is_available():
    CASES.append(
        (["train", *FEATURES, "--out", "{out}", *SMALL, "--set", "train.device=cuda"],
         "--set", "train.device='cuda' needs CUDA device 0, but torch sees 0 GPUs; use cpu or auto")
    )  # fmt: skip


def _image_folder(root, kind: str, fmt: str) -> None:
    """Two identities of three 8x8 images each; root/a/0.<kind> cut in half."""
    pixels = (np.random.default_rng(0).random((8, 8, 3)) * 255).astype(np.uint8)
    for identity in ("a", "b"):
        (root / identity).mkdir(parents=True)
        for n in range(3):
            Image.fromarray(pixels).save(root / identity / f"{n}.{kind}", format=fmt)
    whole = (root / "a" / f"0.{kind}").read_bytes()
    (root / "a" / f"0.{kind}").write_bytes(whole[: len(whole) // 2])


def _inputs(root) -> None:
    """The files the cases read, in `root`."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 6)
    features = (rng.normal(size=(18, 5)) + 4 * labels[:, None]).astype(np.float32)
    np.save(root / "f.npy", features)
    np.save(root / "y.npy", labels)
    np.save(root / "f6.npy", np.concatenate([features, features[:, :1]], axis=1))
    bad = features.copy()
    bad[3, 1] = np.nan
    np.save(root / "fnan.npy", bad)
    bad = features.copy()
    bad[7, 0] = np.inf
    np.save(root / "finf.npy", bad)
    features.tofile(root / "raw.bin")
    (root / "short.meta").write_text("0\n1\n2\n0\n")
    (root / "zero_epochs.yaml").write_text("train:\n  epochs: 0\n")
    (root / "afile").write_text("a user's file\n")
    (root / "random.pt").write_bytes(rng.bytes(300))
    for kind, fmt in (("jpg", "JPEG"), ("png", "PNG")):
        _image_folder(root / kind, kind, fmt)
    for split in ("bounding_box_train", "query", "bounding_box_test"):
        (root / "market" / split).mkdir(parents=True)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("errors")
    _inputs(root)
    tiny = [*DIGITS, "--set", "data.train_fraction=0.1", "--set", "train.identities_per_batch=5"]
    assert main(["train", *FEATURES, "--root", str(root / "f.npy"), "--labels", str(root / "y.npy"),
                 "--out", str(root / "run"), *SMALL]) == 0  # fmt: skip
    digits_run = ["--out", str(root / "digits_run"), "--set", "model.nfe_stages=[2]"]
    assert main(["train", *tiny, *digits_run, *SMALL]) == 0
    before = (root / "afile").read_text()
    argvs = [[arg.replace("{out}", f"out{i}") for arg in case[0]] for i, case in enumerate(CASES)]
    found = run_hdml_batch(argvs, root)
    assert (root / "afile").read_text() == before
    return root, found


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{c[1]}:{c[2][:40]}" for c in CASES])
def test_user_error_is_one_line_exit_2_nothing_written(results, case):
    root, found = results
    argv, option, text = CASES[case]
    result = found[case]
    assert result["rc"] == 2, result["stderr"]
    assert "Traceback" not in result["stderr"]
    last = result["stderr"].strip().splitlines()[-1]
    assert last.startswith(f"hdml {argv[0]}: error: argument {option}: "), last
    assert text in last, last
    assert "weights_only=False" not in result["stderr"]
    assert not (root / f"out{case}").exists()
