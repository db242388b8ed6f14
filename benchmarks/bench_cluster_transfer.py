"""`hdml cluster` with a trained model's stored choice, on a data set it was not tuned on.

    python benchmarks/bench_cluster_transfer.py --models seed0/model.pt seed1/model.pt seed2/model.pt
                                                [--data-seed 1] [--max-identities 300 all]
                                                [--cli-check] [--out benchmarks/results/cluster_transfer]

The models are the demo's HDML (`hdml_ext.demo.demo_settings()`: digit-instances with data.seed
0, 300 source images). For each model:

1. calibrate as `hdml calibrate` does (`hdml_ext.cluster.choice.calibrate`, the default
   settings of `hdml calibrate`) on the demo's validation identities (`DemoSplits.val`);
2. cluster a second data set with that stored choice as `hdml cluster` does (`resolve_choice`,
   then `cluster_by` with the default settings). The second set is digit-instances rendered
   with another data seed (`--data-seed`: other identities, splits, views and camera
   assignments), its held-out rows (query + gallery), keeping only the identities (source digit
   images) that are in none of the demo's splits: not in fit (trained on), not in validation
   (calibrated on), not in the demo's test split (reported on elsewhere). Each size of
   `--max-identities` (source images the second set draws; "all": 1,797) is one set.

Rows: `hdml cluster` with the stored choice; each stored method with its validated parameters
(`--set cluster.method=...`); `hdml cluster` with no stored choice (the settings' defaults);
Infomap with default settings on the cosine kNN graph (k = 10, no similarity floor,
face-cluster-by-infomap's way); propagation over cosine similarity at the threshold and
max_size the demo validates (`hdml_ext.demo.evaluate.Clusterer`'s search); K-Means told the
true K (an oracle). `--cli-check` also runs `hdml embed`, `hdml calibrate` and `hdml cluster
--dataset features` on the first model and the first set, and compares them with the Python rows.

Writes rows.json (every model, set and method; the counts of each set; the stored choices) and
table.md (mean and half-range over models) to --out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from hdml_ext.cluster import ClusterConfig, choose_clustering, clustering_metrics, similarity_edges
from hdml_ext.cluster.choice import calibrate, cluster_by, resolve_choice
from hdml_ext.cluster.infomap import infomap_knn
from hdml_ext.cluster.selection import propagate
from hdml_ext.data import load_embedded_splits
from hdml_ext.demo import DemoSettings, demo_settings
from hdml_ext.demo.splits import DemoSplits, load_demo_splits
from hdml_ext.engine import Settings
from hdml_ext.engine.checkpoint import load_model
from hdml_ext.engine.inference import embed_rows

#: Infomap's default baseline: k of the cosine kNN graph (face-cluster-by-infomap's example).
INFOMAP_K = 10
KEYS = ("nmi", "pairwise_f", "bcubed_f", "num_clusters")
LABELS = {"nmi": "NMI", "pairwise_f": "pairwise F", "bcubed_f": "BCubed F", "num_clusters": "clusters found"}
#: The table's rows, in order: (name, label).
METHODS = (
    ("hdml_cluster", "`hdml cluster`, the model's stored choice"),
    ("hdml_propagation", "stored propagation parameters (`--set cluster.method=propagation`)"),
    ("hdml_infomap", "stored Infomap floor (`--set cluster.method=infomap`)"),
    ("hdml_uncalibrated", "`hdml cluster` without a stored choice (threshold 0.5, max_size 300)"),
    ("infomap_default", "Infomap, cosine kNN graph, default settings (k = 10, no floor)"),
    ("cosine_propagation", "cosine propagation, the demo's validated threshold"),
    ("kmeans_true_k", "K-Means told the true K (oracle)"),
)


@dataclass(frozen=True)
class SecondSet:
    """The rows of the second data set that are clustered: images [N, 3, H, W], their
    identities [N] (source digit images), and how they were kept (`counts`)."""

    name: str
    images: Tensor
    labels: np.ndarray
    counts: dict


def unseen_set(
    demo: DemoSplits, settings: DemoSettings, data_seed: int, max_identities: int | None
) -> SecondSet:
    """The held-out rows (query + gallery) of digit-instances rendered with `data_seed` and
    `max_identities` (the demo's image size), keeping the identities in none of the demo's
    splits (fit, validation, test). counts: identities and rows held out, how many identities
    are in each demo split, and the identities and rows kept."""
    if data_seed == settings.data.seed and max_identities == settings.data.max_identities:
        raise ValueError(f"data_seed {data_seed}, max_identities {max_identities}: the demo's own data")
    data = replace(settings.data, seed=data_seed, max_identities=max_identities)
    splits = load_embedded_splits("digit-instances", data)
    images = torch.cat([splits.query.images, splits.gallery.images])
    identities = torch.cat([splits.query.indices, splits.gallery.indices]).numpy()
    held_out = np.unique(identities)
    demo_ids = {name: np.unique(indices.numpy()) for name, indices in
                (("fit", demo.fit.indices), ("validation", demo.val.indices),
                 ("demo_test", torch.cat([demo.query.indices, demo.gallery.indices])))}  # fmt: skip
    seen = np.unique(np.concatenate(list(demo_ids.values())))
    kept_ids = np.setdiff1d(held_out, seen)
    keep = np.isin(identities, kept_ids)
    counts = {"data_seed": data_seed, "max_identities": max_identities,
              "held_out_identities": int(held_out.size), "held_out_rows": int(identities.size),
              **{f"in_{name}": int(np.intersect1d(held_out, ids).size) for name, ids in demo_ids.items()},
              "kept_identities": int(kept_ids.size), "kept_rows": int(keep.sum())}  # fmt: skip
    size = "all" if max_identities is None else max_identities
    name = f"data.seed {data_seed}, {size} source images: {kept_ids.size} new identities, {keep.sum()} views"
    return SecondSet(name, images[torch.from_numpy(keep)], identities[keep], counts)


def cosine_choice(
    val_emb: Tensor, val_labels: np.ndarray, settings: DemoSettings, k: int
) -> tuple[dict, ClusterConfig]:
    """The demo's validated cosine propagation (`Clusterer.propagation` with no model): threshold
    among quantiles of the validation edges' cosine similarities x max_size among the demo's
    candidates. Returns (the choice, the config to run it with)."""
    config = replace(settings.cluster.cluster_config(), threshold=0.5)
    threshold, max_size, metrics = choose_clustering(similarity_edges(val_emb, k), val_labels, config,
                                                     list(settings.cluster.max_size_candidates))  # fmt: skip
    return ({"threshold": threshold, "max_size": max_size, "validation": metrics},
            replace(config, threshold=threshold, max_size=max_size))  # fmt: skip


def run_model(
    path: Path, demo: DemoSplits, sets: list[SecondSet], log: Callable[[str], None]
) -> tuple[list, dict]:
    """(rows of every set and method, the stored choice) for one model.pt."""
    settings, demo_config = Settings(), demo_settings()
    model = load_model(path)
    k = int(model.to_config()["k"])
    val_emb = embed_rows(model, demo.val.images, batch_size=256)
    val_labels = demo.val.labels.numpy()
    cluster = settings.cluster
    choice = calibrate(model, val_emb, val_labels, cluster.cluster_config())
    cosine, cosine_config = cosine_choice(val_emb, val_labels, demo_config, k)
    log(f"{path}: chose {choice['method']} on {choice['chosen_on']}; "
        + "; ".join(f"{name} {_params(chosen)}" for name, chosen in choice["methods"].items()))
    runs = {
        "hdml_cluster": lambda emb: _hdml(model, emb, choice, cluster, set()),
        "hdml_propagation": lambda emb: _hdml(model, emb, choice, replace(cluster, method="propagation"),
                                              {"cluster.method"}),
        "hdml_infomap": lambda emb: _hdml(model, emb, choice, replace(cluster, method="infomap"),
                                          {"cluster.method"}),
        "hdml_uncalibrated": lambda emb: _hdml(model, emb, None, cluster, set()),
        "infomap_default": lambda emb: (infomap_knn(emb, INFOMAP_K, backend="exact")[0],
                                        f"k {INFOMAP_K}, no floor"),
        "cosine_propagation": lambda emb: (propagate(similarity_edges(emb, k), emb.shape[0], cosine_config,
                                                     cosine_config.threshold),
                                           f"threshold {cosine_config.threshold:.4f}, "
                                           f"max_size {cosine_config.max_size}"),
        "kmeans_true_k": None,
    }  # fmt: skip
    rows = []
    for second in sets:
        emb = embed_rows(model, second.images, batch_size=256)
        truth = second.labels
        true_k = int(np.unique(truth).size)
        runs["kmeans_true_k"] = lambda emb, true_k=true_k: (_kmeans(emb, true_k), f"K = {true_k}")
        for name, _ in METHODS:
            started = time.perf_counter()
            predicted, used = runs[name](emb)
            seconds = time.perf_counter() - started
            metrics = clustering_metrics(truth, predicted)
            rows.append({"model": str(path), "set": second.name, "method": name, "used": used,
                         **{key: metrics[key] for key in KEYS}, "identities": int(np.unique(truth).size),
                         "images": int(truth.size), "seconds": seconds})  # fmt: skip
            log(f"  {name:19s} NMI {metrics['nmi']:.3f} pairwise F {metrics['pairwise_f']:.3f} BCubed F "
                f"{metrics['bcubed_f']:.3f} ({metrics['num_clusters']} clusters, {seconds:.1f} s; {used})")
    return rows, {"clustering": choice, "cosine_propagation": cosine}


def _hdml(model: nn.Module, emb: Tensor, stored: dict | None, cluster: object, given: set) -> tuple:
    """`hdml cluster`'s path: resolve_choice, then cluster_by (F-Graphs with the settings' backend)."""
    method, config, line = resolve_choice(stored, cluster, given)
    return cluster_by(method, model, emb, config), line


def _kmeans(emb: Tensor, clusters: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    unit = torch.nn.functional.normalize(emb, dim=1).numpy()
    return KMeans(n_clusters=clusters, n_init=3, random_state=0).fit_predict(unit)


def _params(chosen: dict) -> str:
    values = {key: value for key, value in chosen.items() if key != "validation"}
    return ", ".join(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
                     for key, value in values.items())  # fmt: skip


def markdown(rows: list[dict], sets: list[dict], choices: dict, command: str) -> str:
    """table.md: per set, every method's mean ± half-range over models; the sets' counts and
    the stored choices."""
    lines = [f"Command: `{command}`", "",
             "The demo's HDML models calibrated by `hdml calibrate`'s function on the demo's validation "
             "identities, clustering the unseen identities of a second digit-instances set. Mean ± "
             "half-range over models.", ""]  # fmt: skip
    for entry in sets:
        name = entry["name"]
        lines += [f"### {name}", "", "| method | " + " | ".join(LABELS[key] for key in KEYS) + " |",
                  "|---|" + "---|" * len(KEYS)]  # fmt: skip
        for method, label in METHODS:
            runs = [row for row in rows if row["set"] == name and row["method"] == method]
            if not runs:
                continue
            cells = []
            for key in KEYS:
                values = np.array([run[key] for run in runs], dtype=np.float64)
                mean, spread = values.mean(), (values.max() - values.min()) / 2
                digits = 1 if key == "num_clusters" else 3
                cells.append(f"{mean:.{digits}f} ± {spread:.{digits}f}")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines += ["", f"{len({row['model'] for row in rows if row['set'] == name})} model(s); "
                  f"{entry['counts']['kept_identities']} true identities. Counts: {entry['counts']}", ""]
    lines += ["Stored choices (calibrated on the demo's validation identities):", ""]
    for model, chosen in choices.items():
        choice = chosen["clustering"]
        parts = [f"{name} ({_params(params)}; validation NMI {params['validation']['nmi']:.3f})"
                 for name, params in choice["methods"].items()]  # fmt: skip
        lines.append(f"- {model}: **{choice['method']}**; " + "; ".join(parts)
                     + f"; cosine propagation {_params(chosen['cosine_propagation'])}")
    return "\n".join(lines) + "\n"


def cli_check(model_path: Path, demo_settings_: DemoSettings, second: SecondSet, out: Path,
              log: Callable[[str], None]) -> dict:  # fmt: skip
    """`hdml embed` (the demo's training split and the second set's held-out rows), `hdml
    calibrate --dataset features` on the validation rows, `hdml cluster --dataset features` on
    the kept rows, with a copy of the model (the calibration is written into it). Returns the
    CLI's metrics.json and the largest difference between the CLI's and Python's embeddings
    (the CLI's files in `out` are removed)."""
    import shutil

    out.mkdir(parents=True, exist_ok=True)
    model = out / "model.pt"
    shutil.copyfile(model_path, model)
    data = demo_settings_.data
    hdml = [sys.executable, "-m", "hdml_ext.cli"]
    demo_sets = ["--set", f"data.height={data.height}", "--set", f"data.width={data.width}"]

    def call(*arguments: str) -> None:
        log("$ hdml " + " ".join(arguments))
        subprocess.run([*hdml, arguments[0], "--quiet", *arguments[1:]], check=True)

    seed, size = second.counts["data_seed"], second.counts["max_identities"]
    call("embed", "--checkpoint", str(model), "--dataset", "digit-instances", "--split", "train",
         "--out", str(out / "train"), *demo_sets, "--set", f"data.seed={data.seed}",
         "--set", f"data.max_identities={data.max_identities}")  # fmt: skip
    call("embed", "--checkpoint", str(model), "--dataset", "digit-instances", "--split", "held-out",
         "--out", str(out / "second"), *demo_sets, "--set", f"data.seed={seed}",
         "--set", f"data.max_identities={'null' if size is None else size}")  # fmt: skip
    train = load_embedded_splits("digit-instances", data).train
    demo = load_demo_splits(data)
    val_rows = np.flatnonzero(np.isin(train.indices.numpy(), demo.val.indices.numpy()))
    features = np.load(out / "train" / "features.npy")
    np.save(out / "val_features.npy", features[val_rows])
    np.save(out / "val_labels.npy", train.indices.numpy()[val_rows])
    held_out = np.load(out / "second" / "features.npy")
    labels = np.load(out / "second" / "labels.npy")
    keep = np.isin(labels, second.labels)
    np.save(out / "unseen_features.npy", held_out[keep])
    np.save(out / "unseen_labels.npy", labels[keep])
    call("calibrate", "--checkpoint", str(model), "--dataset", "features",
         "--root", str(out / "val_features.npy"), "--labels", str(out / "val_labels.npy"))  # fmt: skip
    call("cluster", "--checkpoint", str(model), "--dataset", "features",
         "--root", str(out / "unseen_features.npy"), "--labels", str(out / "unseen_labels.npy"),
         "--out", str(out / "clusters"))  # fmt: skip
    python_emb = embed_rows(load_model(model_path), second.images, batch_size=256).numpy()
    metrics = json.loads((out / "clusters" / "metrics.json").read_text(encoding="utf-8"))
    shutil.rmtree(out)  # the model copy and the features (60 MB); the figures go into rows.json
    same_labels = bool(np.array_equal(labels[keep], second.labels))
    return {"metrics": metrics, "labels_match": same_labels,
            "max_embedding_difference": float(np.abs(held_out[keep] - python_emb).max())}


def _log(line: str) -> None:
    print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=Path, nargs="+", required=True, metavar="MODEL_PT",
                        help="model.pt files trained as the demo trains (demo_settings(), data.seed 0)")
    parser.add_argument("--data-seed", type=int, default=1, help="data.seed of the second set (1)")
    parser.add_argument("--max-identities", nargs="+", default=["300", "all"],
                        help="source images the second set draws, one set each: numbers or 'all' (300 all)")
    parser.add_argument("--quick", action="store_true",
                        help="the demo's --quick data settings (models of demo_settings(quick=True))")
    parser.add_argument("--cli-check", action="store_true",
                        help="also run hdml embed / calibrate / cluster on the first model and set")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/cluster_transfer"),
                        help="output folder (benchmarks/results/cluster_transfer)")
    args = parser.parse_args(argv)
    try:
        sizes = [None if size == "all" else int(size) for size in args.max_identities]
    except ValueError:
        parser.error(f"--max-identities: numbers or 'all', got {args.max_identities}")
    missing = [str(path) for path in args.models if not path.is_file()]
    if missing:
        parser.error(f"--models: no such file(s): {', '.join(missing)}")
    given = argv if argv is not None else sys.argv[1:]
    command = "python benchmarks/bench_cluster_transfer.py " + " ".join(given)
    settings = demo_settings(quick=args.quick)
    demo = load_demo_splits(settings.data)
    sets = [unseen_set(demo, settings, args.data_seed, size) for size in sizes]
    for second in sets:
        print(f"{second.name}; {second.counts}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    rows, choices = [], {}
    for path in args.models:
        model_rows, choices[str(path)] = run_model(path, demo, sets, _log)
        rows += model_rows
    report = {"command": command, "sets": [{"name": s.name, "counts": s.counts} for s in sets],
              "choices": choices, "rows": rows}  # fmt: skip
    if args.cli_check:
        report["cli_check"] = cli_check(args.models[0], settings, sets[0], args.out / "cli", _log)
        print(f"CLI: {report['cli_check']}", flush=True)
    (args.out / "rows.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    text = markdown(rows, report["sets"], choices, command)
    (args.out / "table.md").write_text(text, encoding="utf-8")
    print(text)
    print(f"wrote {args.out}/rows.json and table.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
