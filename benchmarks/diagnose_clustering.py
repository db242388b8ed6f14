"""Why does HDML's propagation trail ARO in NMI on all 150 test identities? Two diagnoses.

    python benchmarks/diagnose_clustering.py --models seed0/model.pt seed1/model.pt seed2/model.pt \
        [--seeds 0 1 2] [--out benchmarks/results/clustering]

On the demo's HDML models and bench_clustering's test sizes (a quarter, half and all of the
150 unseen test identities):

1. Ceiling: the best test NMI that each method's own search space reaches (HDML propagation:
   60 threshold quantiles x bench_clustering.MAX_SIZES; ARO: bench_clustering.ARO_K x
   ARO_THRESHOLDS), with the F-scores at that point. This looks at the test labels, so it is a
   diagnosis, never a result: if HDML's ceiling is above ARO's, the link scores can separate the
   identities as well, and the shortfall is in how the validated choice transfers.
2. Transfer: propagation at the threshold chosen on the 60 validation identities, carried to a
   test set as that absolute link score (bench_clustering's HDML row) or as the same quantile of
   the test set's edge scores (the share of edges below it kept), with the validated max_size.
3. Rank-order over learned edges: ARO (hdml_ext.cluster.aro_cluster) over each row's F-Graph
   neighbours ordered by link score instead of distance, its threshold chosen on validation
   from bench_clustering.ARO_THRESHOLDS.

Writes diagnosis.md to --out and prints it.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_clustering as bench

from hdml_ext.cluster import aro_cluster, choose_clustering, clustering_metrics, selection_score
from hdml_ext.cluster.selection import propagate
from hdml_ext.demo import demo_settings
from hdml_ext.demo.evaluate import embed_splits
from hdml_ext.demo.splits import load_demo_splits
from hdml_ext.engine.checkpoint import load_model
from hdml_ext.graph import build_fgraphs

FIGURES = ("nmi", "pairwise_f", "bcubed_f")
CEILING_QUANTILES = np.linspace(0.05, 0.99, 60)


def carried_threshold(val_scores: np.ndarray, threshold: float, test_scores: np.ndarray) -> float:
    """`threshold` carried from validation to test as a quantile: the test score below which the
    same share of edges lies as below `threshold` among `val_scores`."""
    share = float((np.asarray(val_scores) < threshold).mean())
    return float(np.quantile(np.asarray(test_scores), share))


def best_nmi(candidates: list[np.ndarray], labels: np.ndarray) -> dict:
    """The metrics of the candidate labelling with the highest NMI against `labels`."""
    scored = [clustering_metrics(labels, predicted) for predicted in candidates]
    return max(scored, key=lambda metrics: metrics["nmi"])


def ceilings(view: bench.View, edges: tuple) -> dict[str, dict]:
    """{"hdml", "aro"}: the metrics of each search space's best-NMI point on `view`, whose HDML
    edges are `edges`."""
    scores = np.asarray(edges[2])
    configs = [replace(bench.PROPAGATION, max_size=max_size) for max_size in bench.MAX_SIZES]
    hdml = [propagate(edges, view.size, config, float(np.quantile(scores, q)))
            for q in CEILING_QUANTILES for config in configs]  # fmt: skip
    aro = []
    for k in bench.ARO_K:
        knn = build_fgraphs(torch.from_numpy(view.unit), view.capped(k), backend="exact").knn_idx.numpy()
        aro += [aro_cluster(knn, float(threshold)) for threshold in bench.ARO_THRESHOLDS]
    return {"hdml": best_nmi(hdml, view.labels), "aro": best_nmi(aro, view.labels)}


def validation_choice(val: bench.View) -> dict:
    """What the validation identities choose, once per model: propagation's threshold and
    max_size, the validation edge scores, and the threshold of ARO over link-ordered lists."""
    val_edges = bench._edges(val, "hdml")
    threshold, max_size, _ = choose_clustering(val_edges, val.labels, bench.PROPAGATION,
                                               list(bench.MAX_SIZES))  # fmt: skip
    val_lists = ordered_by_score(val_edges, val.size)
    aro_threshold = max(bench.ARO_THRESHOLDS, key=lambda value: selection_score(
        clustering_metrics(val.labels, aro_cluster(val_lists, float(value)))))
    return {"threshold": threshold, "max_size": max_size, "scores": np.asarray(val_edges[2]),
            "aro_threshold": float(aro_threshold)}


def transfers(choice: dict, test: bench.View, edges: tuple) -> dict[str, dict]:
    """{"absolute", "quantile"}: propagation's metrics on `test` (HDML edges `edges`) at the
    validated threshold of `choice` (`validation_choice`)."""
    config = replace(bench.PROPAGATION, max_size=choice["max_size"])
    carried = carried_threshold(choice["scores"], choice["threshold"], np.asarray(edges[2]))
    return {name: clustering_metrics(test.labels, propagate(edges, test.size, config, value))
            for name, value in (("absolute", choice["threshold"]), ("quantile", carried))}  # fmt: skip


def ordered_by_score(edges: tuple, size: int) -> np.ndarray:
    """[N, k] each row's F-Graph neighbours from link_edges' row-major (src, dst, score), by
    descending score."""
    _, dst, score = (np.asarray(part) for part in edges)
    neighbours, scores = dst.reshape(size, -1), score.reshape(size, -1)
    return np.take_along_axis(neighbours, np.argsort(-scores, axis=1, kind="stable"), axis=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=Path, nargs="+", required=True, metavar="MODEL_PT",
                        help="the demo's HDML model.pt of each seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="their seeds (0 1 2)")
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.25, 0.5, 1.0],
                        help="shares of the test identities (0.25 0.5 1.0)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/clustering"),
                        help="output folder (benchmarks/results/clustering)")
    args = parser.parse_args(argv)
    if len(args.models) != len(args.seeds):
        parser.error(f"--models: give one model.pt per seed ({len(args.seeds)}), got {len(args.models)}")
    data = load_demo_splits(demo_settings().data)
    subsets = bench.test_subsets(data.test_labels, args.sizes)
    rows: dict[tuple[float, str], list[list[float]]] = {}
    for seed, path in zip(args.seeds, args.models):
        model = load_model(path)
        emb = embed_splits(model, data)
        k = int(model.to_config()["k"])
        val = bench._view(emb.val, emb.val, data.val.labels.numpy(), (model, model), k)
        choice = validation_choice(val)
        for share, rows_of in zip(args.sizes, subsets):
            test_emb = emb.test[rows_of]
            test = bench._view(test_emb, test_emb, data.test_labels[rows_of], (model, model), k)
            edges = bench._edges(test, "hdml")
            found = {f"ceiling, {name}": m for name, m in ceilings(test, edges).items()}
            found.update({f"propagation, threshold carried as {name}": m
                          for name, m in transfers(choice, test, edges).items()})  # fmt: skip
            found["ARO over link-ordered F-Graph lists"] = clustering_metrics(
                test.labels, aro_cluster(ordered_by_score(edges, test.size), choice["aro_threshold"]))
            for name, metrics in found.items():
                rows.setdefault((share, name), []).append([metrics[key] for key in FIGURES])
            print(f"seed {seed} share {share}: " + "; ".join(
                f"{name} {metrics['nmi']:.3f}" for name, metrics in found.items()), flush=True)
    given = argv if argv is not None else sys.argv[1:]
    command = "python benchmarks/diagnose_clustering.py " + " ".join(given)
    lines = [f"NMI / pairwise F / BCubed F, mean over seeds {args.seeds}; command: `{command}`",
             "", "| row | " + " | ".join(f"{share:g} of the test identities" for share in args.sizes) + " |",
             "|---|" + "---|" * len(args.sizes)]  # fmt: skip
    for name in dict.fromkeys(name for _, name in rows):
        means = [np.mean(rows[(share, name)], axis=0) for share in args.sizes]
        cells = [" / ".join(f"{value:.3f}" for value in mean) for mean in means]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "diagnosis.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
