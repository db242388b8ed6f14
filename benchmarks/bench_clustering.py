"""The paper's clustering comparison (Table VII) on the demo's unseen test identities.

    python benchmarks/bench_clustering.py [--models run0/model.pt run1/model.pt run2/model.pt]
                                          [--seeds 0 1 2] [--sizes 0.25 0.5 1.0] [--only hdml,aro,...]
                                          [--quick] [--device cpu|cuda] [--out benchmarks/results/clustering]

The paper clusters three IJB-B subsets (512, 1,024 and 1,845 subjects) with K-Means, DBSCAN,
EnSC, spectral clustering, affinity propagation, ARO and an L-GCN-style "GCN", against HDML.
Here the data are the demo's (`hdml_ext.demo`: digit-instances, open-set): the test identities
(query + gallery, never seen in training) at three sizes, each a prefix of one seeded
permutation of them (`--sizes`, shares of the test identities: a quarter, half and all by
default, so the sizes nest as the IJB-B subsets do). Per seed:

- HDML: the demo's model, loaded from `--models` (one model.pt per seed, trained as the demo
  trains it) or trained here on the demo's fit split with that seed;
- GCN: the paper's "GCN" baseline in L-GCN's form (Wang et al. 2019): the link model reads
  node features with the focus subtracted (model.relative_input), a plain GCN (no attention),
  the paper's edge head, no cosine or overlap prior; trained like the demo's HDML (same data,
  settings and seed); clustered by propagation over its link scores.

Every method's parameters are chosen on the validation identities (`DemoSplits.val`, training
identities held out of fit) by the mean of NMI, pairwise F and BCubed F (`selection_score`),
from the search space in METHODS; the test identities choose nothing. K-Means told the true
number of identities is an oracle row, marked. The feature-based baselines (K-Means, DBSCAN,
spectral, affinity propagation, ARO, Infomap) see the HDML model's embeddings, L2-normalised;
DBSCAN's noise points are singletons. "seconds" is the method's run on the test rows (kNN
graph and link scoring included, the embedding not), on this machine.

Writes rows.json (every seed, size and method, with the chosen parameters and their validation
metrics), table.md and table.json (mean and half-range over seeds, per size) and clustering.png
to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from hdml_ext.cluster import (
    ClusterConfig,
    aro_cluster,
    choose_clustering,
    choose_infomap,
    clustering_metrics,
    cosine_knn_edges,
    infomap_edges,
    link_edges,
    selection_score,
    similarity_edges,
)
from hdml_ext.cluster.selection import propagate
from hdml_ext.demo import DemoSettings, demo_settings
from hdml_ext.demo.evaluate import embed_splits
from hdml_ext.demo.run import train_model
from hdml_ext.demo.splits import DemoSplits, load_demo_splits
from hdml_ext.engine.checkpoint import load_model
from hdml_ext.graph import build_fgraphs

#: The L-GCN form of the paper's "GCN" baseline: changes of the demo's model settings.
GCN_MODEL = {"relative_input": True, "attention": False, "edge_input": "node", "balanced_link_loss": False,
             "cosine_prior": False, "overlap_prior": False}  # fmt: skip
#: Images per cluster that K-Means and spectral clustering aim for: K = round(N / r).
IMAGES_PER_CLUSTER = (2, 3, 4, 5, 6, 7, 8, 10, 12)
DBSCAN_EPS = tuple(round(0.1 + 0.05 * step, 2) for step in range(19))  # 0.1 .. 1.0
DBSCAN_MIN_SAMPLES = (1, 2, 3, 5)
SPECTRAL_NEIGHBOURS = (5, 10, 20)
#: Affinity propagation's preference: this quantile of the cosine similarities.
AP_PREFERENCE_QUANTILES = (0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995)
ARO_K = (5, 10, 20)
ARO_THRESHOLDS = tuple(0.25 * step for step in range(1, 13))  # 0.25 .. 3.0
INFOMAP_K = (5, 10, 20, 40)
#: Propagation's fixed settings and max_size candidates (the demo's).
PROPAGATION = ClusterConfig(step=0.1, max_iter=100)
MAX_SIZES = (10, 20, 40, 80)
METRICS = (("nmi", "NMI"), ("pairwise_f", "pairwise F"), ("bcubed_f", "BCubed F"),
           ("num_clusters", "clusters found"), ("seconds", "seconds"))  # fmt: skip


@dataclass(frozen=True)
class View:
    """One split to cluster: the HDML model's embeddings [N, D], the L2-normalised ones (numpy),
    the GCN model's embeddings, the true identities [N], and both models."""

    embeddings: torch.Tensor
    unit: np.ndarray
    gcn_embeddings: torch.Tensor
    labels: np.ndarray
    hdml: torch.nn.Module
    gcn: torch.nn.Module
    k: int

    @property
    def size(self) -> int:
        return int(self.labels.size)

    def capped(self, k: int) -> int:
        """k, at most N - 1 (tiny splits of --quick)."""
        return max(1, min(k, self.size - 1))


def _view(emb: torch.Tensor, gcn_emb: torch.Tensor, labels: np.ndarray, models: tuple, k: int) -> View:
    unit = torch.nn.functional.normalize(emb.float(), dim=1).numpy()
    return View(emb, unit, gcn_emb, labels, models[0], models[1], k)


# --- the methods: each a search space (on the validation view) and a run ---------------------


def _kmeans(view: View, params: dict) -> np.ndarray:
    from sklearn.cluster import KMeans

    clusters = params.get("clusters") or round(view.size / params["images_per_cluster"])
    clusters = max(1, min(view.size, clusters))
    return KMeans(n_clusters=clusters, n_init=3, random_state=0).fit_predict(view.unit)


def _dbscan(view: View, params: dict) -> np.ndarray:
    from sklearn.cluster import DBSCAN

    labels = DBSCAN(eps=params["eps"], min_samples=params["min_samples"]).fit_predict(view.unit)
    noise = labels < 0
    labels[noise] = labels.max() + 1 + np.arange(noise.sum())  # noise points are singletons
    return labels


def _spectral(view: View, params: dict) -> np.ndarray:
    from sklearn.cluster import SpectralClustering

    clusters = max(1, min(view.size - 1, round(view.size / params["images_per_cluster"])))
    model = SpectralClustering(n_clusters=clusters, affinity="nearest_neighbors",
                               n_neighbors=view.capped(params["n_neighbors"]), assign_labels="discretize",
                               random_state=0)  # fmt: skip
    return model.fit_predict(view.unit)


def _affinity_propagation(view: View, params: dict) -> np.ndarray:
    from sklearn.cluster import AffinityPropagation

    similarity = view.unit @ view.unit.T
    preference = float(np.quantile(similarity, params["preference_quantile"]))
    model = AffinityPropagation(affinity="precomputed", preference=preference, damping=0.9, max_iter=500,
                                random_state=0)  # fmt: skip
    return model.fit_predict(similarity)


def _aro(view: View, params: dict) -> np.ndarray:
    knn = build_fgraphs(torch.from_numpy(view.unit), view.capped(params["k"]), backend="exact").knn_idx
    return aro_cluster(knn.numpy(), params["threshold"])


def _infomap_cosine(view: View, params: dict) -> np.ndarray:
    src, dst, cosine = cosine_knn_edges(view.unit, view.capped(params["k"]), backend="exact")
    return infomap_edges(view.size, src, dst, cosine, min_score=params["min_score"])[0]


def _edges(view: View, source: str) -> tuple:
    """(src, dst, score) of the view's kNN edges at the model's k: "cosine" (similarity_edges of
    HDML's embeddings), "hdml" or "gcn" (that model's link scores)."""
    k = view.capped(view.k)
    if source == "cosine":
        return similarity_edges(view.embeddings, k)
    if source == "hdml":
        return link_edges(view.hdml, view.embeddings, k)
    return link_edges(view.gcn, view.gcn_embeddings, k)


def _propagation(source: str) -> Callable[[View, dict], np.ndarray]:
    def run(view: View, params: dict) -> np.ndarray:
        config = replace(PROPAGATION, max_size=params["max_size"])
        return propagate(_edges(view, source), view.size, config, params["threshold"])

    return run


def _choose_propagation(source: str) -> Callable[[View], tuple[dict, dict]]:
    def choose(view: View) -> tuple[dict, dict]:
        threshold, max_size, metrics = choose_clustering(_edges(view, source), view.labels, PROPAGATION,
                                                         list(MAX_SIZES))  # fmt: skip
        return {"threshold": threshold, "max_size": max_size}, metrics

    return choose


def _hdml_infomap(view: View, params: dict) -> np.ndarray:
    src, dst, score = _edges(view, "hdml")
    return infomap_edges(view.size, src, dst, score, min_score=params["min_score"])[0]


def _choose_hdml_infomap(view: View) -> tuple[dict, dict]:
    floor, metrics = choose_infomap(_edges(view, "hdml"), view.labels)
    return {"min_score": floor}, metrics


def _choose_infomap_cosine(view: View) -> tuple[dict, dict]:
    best = None
    for k in INFOMAP_K:
        edges = cosine_knn_edges(view.unit, view.capped(k), backend="exact")
        floor, metrics = choose_infomap(edges, view.labels)
        if best is None or selection_score(metrics) > selection_score(best[1]):
            best = ({"k": k, "min_score": floor}, metrics)
    return best


def _choose_aro(view: View) -> tuple[dict, dict]:
    best = None
    for k in ARO_K:  # one kNN table and one distance computation per k, then every threshold
        knn = build_fgraphs(torch.from_numpy(view.unit), view.capped(k), backend="exact").knn_idx.numpy()
        for threshold in ARO_THRESHOLDS:
            metrics = clustering_metrics(view.labels, aro_cluster(knn, float(threshold)))
            if best is None or selection_score(metrics) > selection_score(best[1]):
                best = ({"k": k, "threshold": float(threshold)}, metrics)
    return best


@dataclass(frozen=True)
class Method:
    """A row of the table: `run(view, params) -> labels`, parameters from `space` (a grid,
    searched on validation) or `choose(view) -> (params, validation metrics)`, or fixed from
    the test view itself for an oracle (`oracle(view) -> params`)."""

    label: str
    space: str
    run: Callable[[View, dict], np.ndarray]
    grid: tuple = ()
    choose: Callable[[View], tuple[dict, dict]] | None = None
    oracle: Callable[[View], dict] | None = None


def _grid(**axes: tuple) -> tuple:
    names = list(axes)
    grids = np.meshgrid(*[np.arange(len(axes[name])) for name in names], indexing="ij")
    return tuple({name: _plain(axes[name][i]) for name, i in zip(names, combo)}
                 for combo in zip(*(g.reshape(-1) for g in grids)))  # fmt: skip


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


METHODS: dict[str, Method] = {
    "kmeans": Method("K-Means (K = N / r, r chosen on validation)", f"r in {IMAGES_PER_CLUSTER}", _kmeans,
                     grid=_grid(images_per_cluster=IMAGES_PER_CLUSTER)),
    "kmeans_true_k": Method("K-Means told the true K", "none (K = the true number of test identities)",
                            _kmeans, oracle=lambda view: {"clusters": int(np.unique(view.labels).size)}),
    "dbscan": Method("DBSCAN", f"eps in {DBSCAN_EPS} x min_samples in {DBSCAN_MIN_SAMPLES}", _dbscan,
                     grid=_grid(eps=DBSCAN_EPS, min_samples=DBSCAN_MIN_SAMPLES)),
    "spectral": Method("spectral clustering (kNN affinity, K = N / r)",
                       f"r in {IMAGES_PER_CLUSTER} x n_neighbors in {SPECTRAL_NEIGHBOURS}", _spectral,
                       grid=_grid(images_per_cluster=IMAGES_PER_CLUSTER, n_neighbors=SPECTRAL_NEIGHBOURS)),
    "affinity_propagation": Method("affinity propagation (cosine similarity, damping 0.9)",
                                   "preference = quantile q of the cosine similarities, "
                                   f"q in {AP_PREFERENCE_QUANTILES}",
                                   _affinity_propagation,
                                   grid=_grid(preference_quantile=AP_PREFERENCE_QUANTILES)),
    "aro": Method("ARO (approximate rank-order)", f"k in {ARO_K} x threshold in {ARO_THRESHOLDS}", _aro,
                  choose=_choose_aro),
    "gcn": Method("GCN (L-GCN form: focus subtracted, no attention) + propagation",
                  f"threshold among 100 quantiles of its link scores x max_size in {MAX_SIZES}",
                  _propagation("gcn"), choose=_choose_propagation("gcn")),
    "infomap_cosine": Method("Infomap, cosine-weighted kNN graph",
                             f"k in {INFOMAP_K} x similarity floor among 10 quantiles of the edges",
                             _infomap_cosine, choose=_choose_infomap_cosine),
    "cosine_propagation": Method("propagation over cosine similarity (HDML embeddings)",
                                 f"threshold among 100 quantiles x max_size in {MAX_SIZES}",
                                 _propagation("cosine"), choose=_choose_propagation("cosine")),
    "hdml": Method("HDML: propagation over link scores (the paper's)",
                   f"threshold among 100 quantiles of the link scores x max_size in {MAX_SIZES}",
                   _propagation("hdml"), choose=_choose_propagation("hdml")),
    "hdml_infomap": Method("HDML: Infomap over link-score-weighted edges",
                           "link-score floor among 10 quantiles of the edges", _hdml_infomap,
                           choose=_choose_hdml_infomap),
}  # fmt: skip


def choose_on_validation(method: Method, val: View) -> tuple[dict, dict | None]:
    """The method's parameters chosen on the validation view, and their validation metrics
    (None for an oracle, whose parameters come from the test view)."""
    if method.oracle is not None:
        return {}, None
    if method.choose is not None:
        return method.choose(val)
    best = None
    for params in method.grid:
        metrics = clustering_metrics(val.labels, method.run(val, params))
        if best is None or selection_score(metrics) > selection_score(best[1]):
            best = (params, metrics)
    assert best is not None
    return best


def test_subsets(labels: np.ndarray, shares: list[float], seed: int = 0) -> list[np.ndarray]:
    """Row indices of each size: the rows of the first round(share * P) identities of one
    seeded permutation of the P test identities (so each size holds the smaller ones)."""
    identities = np.random.default_rng(seed).permutation(np.unique(labels))
    return [np.flatnonzero(np.isin(labels, identities[: max(2, round(share * identities.size))]))
            for share in shares]  # fmt: skip


def models_for_seed(seed: int, settings: DemoSettings, data: DemoSplits, model_path: Path | None,
                    with_gcn: bool = True) -> tuple:  # fmt: skip
    """(HDML, GCN) of one seed: HDML from `model_path` or trained; the GCN baseline trained (or,
    when no row uses it, HDML in its place)."""
    seeded = replace(settings, train=replace(settings.train, seed=seed, progress=False))
    quiet = lambda _: None  # noqa: E731
    if model_path is None:
        hdml = train_model("hdml", seeded, data, None, quiet)[0].cpu().eval()
    else:
        hdml = load_model(model_path)
    if not with_gcn:
        return hdml, hdml
    gcn = train_model("gcn", seeded, data, None, quiet, **GCN_MODEL)[0].cpu().eval()
    return hdml, gcn


def run_seed(seed: int, names: list[str], settings: DemoSettings, data: DemoSplits, shares: list[float],
             model_path: Path | None, log: Callable[[str], None]) -> list[dict]:  # fmt: skip
    """Every method's row at every size for one seed."""
    started = time.perf_counter()
    hdml, gcn = models_for_seed(seed, settings, data, model_path, with_gcn="gcn" in names)
    log(f"seed {seed}: models ready in {time.perf_counter() - started:.0f} s")
    emb = embed_splits(hdml, data)
    gcn_emb = emb if gcn is hdml else embed_splits(gcn, data)
    k = int(hdml.to_config()["k"])
    val = _view(emb.val, gcn_emb.val, data.val.labels.numpy(), (hdml, gcn), k)
    subsets = test_subsets(data.test_labels, shares)
    rows = []
    for name in names:
        method = METHODS[name]
        chosen_at = time.perf_counter()
        params, val_metrics = choose_on_validation(method, val)
        choose_seconds = time.perf_counter() - chosen_at
        for share, rows_of in zip(shares, subsets):
            test = _view(emb.test[rows_of], gcn_emb.test[rows_of], data.test_labels[rows_of], (hdml, gcn), k)
            run_params = method.oracle(test) if method.oracle is not None else params
            run_at = time.perf_counter()
            predicted = method.run(test, run_params)
            seconds = time.perf_counter() - run_at
            metrics = clustering_metrics(test.labels, predicted)
            rows.append({
                "seed": seed, "share": share, "identities": int(np.unique(test.labels).size),
                "images": test.size, "method": name, "oracle": method.oracle is not None,
                "params": run_params, "validation": val_metrics, "choose_seconds": choose_seconds,
                **{key: metrics[key] for key, _ in METRICS if key != "seconds"}, "seconds": seconds,
            })  # fmt: skip
            log(f"seed {seed} {name:21s} {test.size:5d} images: NMI {metrics['nmi']:.3f} pairwise F "
                f"{metrics['pairwise_f']:.3f} BCubed F {metrics['bcubed_f']:.3f} "
                f"({metrics['num_clusters']} clusters, {seconds:.2f} s; {run_params})")
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Per (size, method): every METRICS key's mean and half-range over seeds."""
    table = []
    for share in sorted({row["share"] for row in rows}):
        for name in METHODS:
            runs = [row for row in rows if row["share"] == share and row["method"] == name]
            if not runs:
                continue
            entry = {"share": share, "identities": runs[0]["identities"], "images": runs[0]["images"],
                     "method": name, "oracle": runs[0]["oracle"], "seeds": [run["seed"] for run in runs]}
            for key, _ in METRICS:
                values = np.array([run[key] for run in runs], dtype=np.float64)
                entry[key] = [float(values.mean()), float(values.max() - values.min()) / 2]
            table.append(entry)
    return table


def markdown(table: list[dict], command: str) -> str:
    lines = [f"Command: `{command}`", "",
             "digit-instances, unseen test identities (query + gallery); every method's parameters chosen "
             "on the validation identities from the search space below, never on the test identities. Mean "
             "± half-range over seeds; seconds on the machine that ran it.", ""]  # fmt: skip
    for share in sorted({entry["share"] for entry in table}):
        entries = [entry for entry in table if entry["share"] == share]
        lines += [f"### {entries[0]['identities']} identities, {entries[0]['images']} images "
                  f"({share:g} of the test identities)", "",
                  "| method | " + " | ".join(label for _, label in METRICS) + " |",
                  "|---|" + "---|" * len(METRICS)]  # fmt: skip
        for entry in entries:
            name = METHODS[entry["method"]].label + (" (oracle)" if entry["oracle"] else "")
            cells = []
            for key, _ in METRICS:
                mean, spread = entry[key]
                cells.append(f"{mean:.1f} ± {spread:.1f}" if key == "num_clusters" else
                             f"{mean:.3f} ± {spread:.3f}")  # fmt: skip
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Search spaces (validation identities):", ""]
    lines += [f"- {method.label}: {method.space}" for name, method in METHODS.items()
              if any(entry["method"] == name for entry in table)]  # fmt: skip
    return "\n".join(lines) + "\n"


def plot(table: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5), sharex=True)
    names = list(dict.fromkeys(entry["method"] for entry in table))
    colours = plt.get_cmap("tab20")
    for ax, (key, label) in zip(axes, METRICS[:3]):
        for index, name in enumerate(names):
            entries = [entry for entry in table if entry["method"] == name]
            style = "-" if name.startswith("hdml") else "--"
            ax.errorbar([e["identities"] for e in entries], [e[key][0] for e in entries],
                        yerr=[e[key][1] for e in entries], fmt=style + "o", color=colours(index),
                        label=name, capsize=3, linewidth=2.2 if name.startswith("hdml") else 1.2)  # fmt: skip
        ax.set_title(label)
        ax.set_xlabel("test identities")
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle("digit-instances, unseen test identities: clustering (parameters chosen on validation)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(rows: list[dict], out: Path, command: str) -> str:
    """table.md, table.json and clustering.png of `rows` in `out`; returns the markdown."""
    table = summarise(rows)
    text = markdown(table, command)
    (out / "table.md").write_text(text, encoding="utf-8")
    (out / "table.json").write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    plot(table, out / "clustering.png")
    return text


def _log(line: str) -> None:
    print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=Path, nargs="+", metavar="MODEL_PT",
                        help="the demo's HDML model.pt of each seed, in --seeds order (default: train them)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (0 1 2)")
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.25, 0.5, 1.0],
                        help="shares of the test identities (0.25 0.5 1.0)")
    parser.add_argument("--only", help=f"comma-separated methods (default all: {', '.join(METHODS)})")
    parser.add_argument("--quick", action="store_true", help="the demo's --quick settings (a smoke run)")
    parser.add_argument("--device", default="cpu",
                        help="where the GCN (and HDML) train (cpu); scoring is on the CPU")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/clustering"),
                        help="output folder (benchmarks/results/clustering)")
    parser.add_argument("--rows", type=Path, nargs="+", metavar="FILE",
                        help="no runs: tabulate rows.json files of earlier runs (e.g. one per seed)")
    args = parser.parse_args(argv)
    names = list(METHODS) if args.only is None else args.only.split(",")
    unknown = [name for name in names if name not in METHODS]
    if unknown:
        parser.error(f"--only: unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    if args.models is not None and len(args.models) != len(args.seeds):
        parser.error(f"--models: give one model.pt per seed ({len(args.seeds)}), got {len(args.models)}")
    if any(not 0 < share <= 1 for share in args.sizes):
        parser.error(f"--sizes: shares in (0, 1], got {args.sizes}")
    command = "python benchmarks/bench_clustering.py " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.mkdir(parents=True, exist_ok=True)
    if args.rows:
        rows = [row for path in args.rows for row in json.loads(path.read_text(encoding="utf-8"))]
        print(report(rows, args.out, command))
        return 0
    settings = demo_settings(quick=args.quick)
    settings = replace(settings, train=replace(settings.train, device=args.device))
    data = load_demo_splits(settings.data)
    print(f"digit-instances: {len(data.fit)} fit, {len(data.val)} validation images "
          f"({np.unique(data.val.labels).size} identities), {data.test_labels.size} test images "
          f"({np.unique(data.test_labels).size} identities); sizes {args.sizes}; seeds {args.seeds}",
          flush=True)  # fmt: skip
    rows: list[dict] = []
    for index, seed in enumerate(args.seeds):
        model_path = None if args.models is None else args.models[index]
        rows += run_seed(seed, names, settings, data, args.sizes, model_path, _log)
        (args.out / "rows.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print(report(rows, args.out, command))
    print(f"wrote {args.out}/rows.json, table.md, table.json and clustering.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
