"""Does the graph pay off on unseen identities? The edge-head and Table II ablations in one run.

    python benchmarks/bench_ablation.py [--seeds 0 1] [--only paper,relative,...] [--quick]
                                        [--size 16] [--lr 0.04] [--device cpu|cuda]
                                        [--out benchmarks/results/ablation]
    python benchmarks/bench_ablation.py --tables [--seeds 0 1 2] [--only demo,k20,...]
                                        [--out benchmarks/results/ablation_tables]

Every configuration changes the paper's HDML as the demo builds it (`hdml_ext.demo`:
resnet18 HA-Net, RE-GCN 256-128, k = 10, the demo's image size and learning rate unless --size
and --lr say otherwise; on 200 identities, 5 epochs, so that a run takes minutes on 2 cores) and
trains it on the same digit-instances training identities, once per seed (the seed changes the
initialisation and the batches; the data stay fixed), and is scored on the unseen
test identities by `hdml_ext.demo.evaluate`, as the demo scores it:

- link AUC and cosine AUC: how well the link head's scores, and the cosine similarity of the
  same embeddings, separate same-identity from different-identity kNN edges of the held-out rows;
- graph ranking (each query's F-Graph neighbours by link score, then the rest by distance):
  mAP, rank-1, mINP; beside it, the same embeddings ranked by distance and by k-reciprocal
  re-ranking;
- propagation over link scores: NMI, pairwise F, BCubed F; beside it, cosine propagation of the
  same embeddings; thresholds and max_size chosen on the validation identities.

With --tables it runs the paper's Tables II-IV instead (TABLE_CONFIGS): each configuration
changes the demo's own model and recipe (`hdml_ext.demo.demo_settings`, unchanged: 300
identities, 4 epochs, the cosine and overlap priors), and the table adds the paper's graph rule
(graph-rule mAP / R1) beside HDML's validated default ranking (mAP / R1).

The default configuration is the one with the best mean validation score (the clustering
selection score of link propagation on the validation identities); the test split chooses
nothing. Writes rows.json (every run), table.md (mean and spread over seeds) and ablation.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from hdml_ext.cluster import selection_score
from hdml_ext.demo import DemoSettings, demo_settings
from hdml_ext.demo.evaluate import (
    Clusterer,
    distance_ranking,
    embed_splits,
    k_reciprocal_ranking,
    score_hdml,
)
from hdml_ext.demo.run import train_model
from hdml_ext.demo.splits import DemoSplits, load_demo_splits, query_gallery

#: name -> (model settings changed from the demo's, with training settings under "train", what
#: it tests). "paper" is the paper's head.
CONFIGS: dict[str, tuple[dict, str]] = {
    "paper": ({}, "the paper: the edge head reads h_i"),
    "paper+balanced": ({"balanced_link_loss": True}, "the paper's head, class-balanced L2"),
    "relative": ({"edge_input": "relative"}, "edge head reads h_i - h_focus"),
    "relative+balanced": ({"edge_input": "relative", "balanced_link_loss": True}, "relative, balanced L2"),
    "pair": ({"edge_input": "pair"}, "edge head reads [h_i, h_focus, |h_i - h_focus|]"),
    "relative_cosine": ({"edge_input": "relative_cosine"},
                        "edge head reads [h_i - h_focus, cosine of the two nodes' embeddings]"),
    "pair+balanced": ({"edge_input": "pair", "balanced_link_loss": True}, "pair, balanced L2"),
    "relative_input": ({"relative_input": True}, "the focus subtracted before the GCN (L-GCN)"),
    "no_nfa": ({"use_nfa": False}, "Table II: the paper, NFA off"),
    "one_nfe_stage": ({"nfe_stages": [4]}, "Table II: the paper, NFE on stage 4 only"),
    "plain_gcn": ({"attention": False}, "Table II: the paper, GCN instead of RE-GCN"),
    "paper+negatives": ({"train": {"max_positive_share": 0.3}},
                        "the paper, training graphs with at most 30% same-identity neighbours"),
    "relative+negatives": ({"edge_input": "relative", "train": {"max_positive_share": 0.3}},
                           "relative, training graphs with at most 30% same-identity neighbours"),
    "relative_cosine+negatives": (
        {"edge_input": "relative_cosine", "train": {"max_positive_share": 0.3}},
        "relative_cosine, training graphs with at most 30% same-identity neighbours",
    ),
    "paper+cosine_prior": ({"cosine_prior": True},
                           "the paper's head plus a learnt a*cos + b on the same-identity logit"),
    "relative+cosine_prior": ({"edge_input": "relative", "cosine_prior": True},
                              "relative, plus a learnt a*cos + b on the same-identity logit"),
    "relative+negatives+cosine_prior": (
        {"edge_input": "relative", "cosine_prior": True, "train": {"max_positive_share": 0.3}},
        "relative+negatives, plus a learnt a*cos + b on the same-identity logit",
    ),
    "paper+cosine_prior+overlap_prior": (
        {"cosine_prior": True, "overlap_prior": True},
        "paper+cosine_prior, plus a learnt c * (share of i's neighbours inside the focus's F-Graph)",
    ),
    "relative+cosine_prior+overlap_prior": (
        {"edge_input": "relative", "cosine_prior": True, "overlap_prior": True},
        "relative+cosine_prior, plus the overlap prior",
    ),
}

#: The paper's Tables II-IV at the demo's recipe (`--tables`): name -> (model settings changed
#: from the demo's, what it tests). The paper's variant II-3 (no NFE at all) has no counterpart:
#: HA-Net's embedding is the concatenation of its NFE outputs.
TABLE_CONFIGS: dict[str, tuple[dict, str]] = {
    "demo": ({}, "the demo's model: RE-GCN, NFA on, NFE on stages 2-4 (II-6), k = 10 (III), 2 layers (IV)"),
    "gcn": ({"attention": False}, "II-1: GCN layers (Eq. 12) instead of RE-GCN"),
    "no_nfa": ({"use_nfa": False}, "II-2: NFA off"),
    "nfe_4": ({"nfe_stages": [4]}, "II-4: NFE on the last stage only"),
    "nfe_3_4": ({"nfe_stages": [3, 4]}, "II-5: NFE on the last two stages"),
    **{f"k{k}": ({"k": k}, f"III: k = {k}") for k in (20, 30, 40, 50)},
    "l3": ({"gcn_dims": [256, 256, 128]}, "IV: 3 RE-GCN layers (256, 256, 128)"),
    "l4": ({"gcn_dims": [256, 256, 256, 128]}, "IV: 4 RE-GCN layers (256, 256, 256, 128)"),
}

#: The paper's link options, the base every configuration changes (the demo defaults to the
#: configuration this benchmark chose).
PAPER_MODEL = {"edge_input": "node", "relative_input": False, "balanced_link_loss": False,
               "cosine_prior": False, "overlap_prior": False}

COLUMNS = (
    ("link_auc", "link AUC"), ("cosine_auc", "cosine AUC"),
    ("mAP", "graph mAP"), ("distance_mAP", "distance mAP"), ("k_reciprocal_mAP", "k-recip. mAP"),
    ("rank1", "graph R1"), ("mINP", "graph mINP"),
    ("nmi", "NMI"), ("cosine_nmi", "cosine NMI"), ("pairwise_f", "pair F"), ("bcubed_f", "BCubed F"),
    ("cosine_bcubed_f", "cosine BCubed F"), ("val_score", "val score"),
)  # fmt: skip

#: The columns of `--tables`: the paper's tables report mAP and rank-1 of its graph rule.
TABLE_COLUMNS = (
    ("graph_rule_mAP", "graph-rule mAP"), ("graph_rule_rank1", "graph-rule R1"),
    ("mAP", "mAP"), ("rank1", "R1"), ("distance_mAP", "distance mAP"), ("link_auc", "link AUC"),
    ("nmi", "NMI"), ("pairwise_f", "pair F"), ("bcubed_f", "BCubed F"), ("val_score", "val score"),
    ("train_seconds", "train s"),
)  # fmt: skip


def add_base_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the demo-sized base every run trains (`base_settings` reads them)."""
    parser.add_argument("--max-identities", type=int, default=200, help="digit-instances identities (200)")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs per run (5)")
    parser.add_argument("--size", type=int, default=None,
                        help="image height and width in pixels (default: the demo's)")
    parser.add_argument("--lr", type=float, default=None, help="SGD learning rate (default: the demo's)")
    parser.add_argument("--identities-per-batch", type=int, default=8,
                        help="P of the PK focus batches (8, as the demo)")
    parser.add_argument("--device", default="cpu",
                        help="where to train (cpu, as the demo, or cuda); scoring runs on the CPU (cpu)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (the demo's --quick settings)")


def base_settings(args: argparse.Namespace) -> DemoSettings:
    """The demo's settings with the paper's link options and training graphs (every configuration
    changes those, not the demo's chosen ones), sized by `add_base_arguments`' options."""
    settings = demo_settings(quick=args.quick)
    settings = replace(settings, model=replace(settings.model, **PAPER_MODEL),
                       train=replace(settings.train, max_positive_share=None, device=args.device))
    if args.quick:
        return settings
    size = (settings.data.height, settings.data.width) if args.size is None else (args.size, args.size)
    return replace(
        settings,
        data=replace(settings.data, max_identities=args.max_identities, height=size[0], width=size[1]),
        train=replace(settings.train, epochs=args.epochs, milestones=[max(1, args.epochs - 2)],
                      identities_per_batch=args.identities_per_batch,
                      lr=settings.train.lr if args.lr is None else args.lr),
    )


def tables_settings(args: argparse.Namespace) -> DemoSettings:
    """`--tables`' base: the demo's settings unchanged (its --quick ones with --quick), on
    --device."""
    settings = demo_settings(quick=args.quick)
    return replace(settings, train=replace(settings.train, device=args.device))


def largest_k(data: DemoSplits) -> int:
    """The largest k every evaluation of `data` allows: each F-Graph holds k nodes besides its
    focus, in the smallest set that is searched (the validation identities' Re-ID gallery, the
    validation rows, the test gallery)."""
    _, val_gallery = query_gallery(data.val)
    return min(len(val_gallery), len(data.val), len(data.gallery)) - 1


def run_one(name: str, seed: int, settings: DemoSettings, data: DemoSplits,
            configs: dict[str, tuple[dict, str]] = CONFIGS) -> dict:  # fmt: skip
    """Train configuration `name` of `configs` with `seed`; every COLUMNS and TABLE_COLUMNS
    figure of it."""
    changes, _ = configs[name]
    model_changes = {key: value for key, value in changes.items() if key != "train"}
    train = replace(settings.train, seed=seed, progress=False, **changes.get("train", {}))
    run_settings = replace(settings, model=replace(settings.model, **model_changes), train=train)
    started = time.perf_counter()
    model, _, train_seconds = train_model(name, run_settings, data, None, lambda _: None)
    model = model.cpu()
    emb = embed_splits(model, data)
    clusterer = Clusterer(data, run_settings)
    hdml, detail = score_hdml(model, emb, data, clusterer)
    cosine_labels, _ = clusterer.propagation(None, emb)
    cosine = clusterer.metrics(cosine_labels)
    return {
        "config": name, "seed": seed, "size": settings.data.height, "lr": settings.train.lr,
        "epochs": settings.train.epochs, **{key: hdml[key] for key in hdml},
        "graph_rule_mAP": detail["rows"]["hdml_graph_rule"]["mAP"],
        "graph_rule_rank1": detail["rows"]["hdml_graph_rule"]["rank1"],
        "ranking": detail["ranking_choices"]["default"],
        "distance_mAP": distance_ranking(emb, data)["mAP"],
        "k_reciprocal_mAP": k_reciprocal_ranking(emb, data)["mAP"],
        "cosine_nmi": cosine["nmi"], "cosine_bcubed_f": cosine["bcubed_f"],
        "val_score": selection_score(detail["choice"]["validation"]),
        "val_link_auc": detail["diagnostics"]["val"]["link_auc"],
        "train_positive_share": detail["diagnostics"]["fit"]["same_class_share"],
        "test_positive_share": detail["diagnostics"]["test"]["same_class_share"],
        "train_seconds": train_seconds, "seconds": time.perf_counter() - started,
    }  # fmt: skip


Summary = dict[str, dict[str, tuple[float, float]]]


def summarise(rows: list[dict], configs: dict[str, tuple[dict, str]] = CONFIGS,
              columns: tuple[tuple[str, str], ...] = COLUMNS) -> Summary:  # fmt: skip
    """config -> column -> (mean, spread) over seeds; spread = (max - min) / 2. Configurations in
    `configs`' order, then any others in the order of their rows."""
    table: Summary = {}
    names = list(dict.fromkeys(row["config"] for row in rows))
    known = list(configs)
    for name in sorted(names, key=lambda n: known.index(n) if n in known else len(known) + names.index(n)):
        runs = [row for row in rows if row["config"] == name]
        table[name] = {}
        for key, _ in columns:
            values = np.array([run[key] for run in runs], dtype=np.float64)
            table[name][key] = (float(values.mean()), float(values.max() - values.min()) / 2)
    return table


def markdown(table: dict, chosen: str, seeds: list[int], configs: dict[str, tuple[dict, str]] = CONFIGS,
             columns: tuple[tuple[str, str], ...] = COLUMNS) -> str:  # fmt: skip
    head = "| configuration | " + " | ".join(label for _, label in columns) + " |"
    lines = [head, "|" + "---|" * (len(columns) + 1)]
    for name, values in table.items():
        mark = " (chosen on validation)" if name == chosen else ""
        cells = " | ".join(f"{values[key][0]:.3f} ± {values[key][1]:.3f}" for key, _ in columns)
        lines.append(f"| {name}{mark} | {cells} |")
    notes = [f"- {name}: {what}" for name, (_, what) in configs.items() if name in table]
    if columns is TABLE_COLUMNS:
        legend = ("graph rule = the paper's ranking by the query's F-Graph link scores; mAP / R1 = "
                  "HDML's ranking chosen on validation; distance = the same embeddings without the graph; "
                  "NMI, pair F, BCubed F = link propagation; train s = seconds of training.")
    else:
        legend = ("graph = the model's link scores, distance / k-recip. / cosine = the same model's "
                  "embeddings without the graph.")
    return "\n".join([f"Mean ± half-range over seeds {seeds}; {legend}", "", *lines, "", *notes]) + "\n"


def plot(table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(table)
    gains = {
        "link AUC - cosine AUC": [table[n]["link_auc"] for n in names],
        "graph mAP - distance mAP": [table[n]["mAP"] for n in names],
        "link NMI - cosine NMI": [table[n]["nmi"] for n in names],
    }
    bases = {
        "link AUC - cosine AUC": [table[n]["cosine_auc"][0] for n in names],
        "graph mAP - distance mAP": [table[n]["distance_mAP"][0] for n in names],
        "link NMI - cosine NMI": [table[n]["cosine_nmi"][0] for n in names],
    }
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), sharey=True)
    for ax, (label, values) in zip(axes, gains.items()):
        diff = [v[0] - b for v, b in zip(values, bases[label])]
        ax.barh(names, diff, xerr=[v[1] for v in values], color=["C2" if d > 0 else "C3" for d in diff])
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(label)
        ax.tick_params(axis="x", labelrotation=30)
    axes[0].invert_yaxis()
    fig.suptitle("digit-instances, unseen test identities: what the graph adds over the same embeddings")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_tables(table: dict, path: Path) -> None:
    """Tables II-IV as bars: graph-rule mAP, HDML's default-ranking mAP and NMI per configuration,
    with the half-range over seeds as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(table)
    panels = (("graph_rule_mAP", "graph-rule mAP (the paper's tables)"), ("mAP", "mAP, validated ranking"),
              ("nmi", "NMI, link propagation"))
    fig, axes = plt.subplots(1, len(panels), figsize=(15, 4), sharey=True)
    for ax, (key, title) in zip(axes, panels):
        means = [table[n][key][0] for n in names]
        ax.barh(names, means, xerr=[table[n][key][1] for n in names], color="C0")
        ax.set_xlim(min(means) - 0.05, max(means) + 0.03)
        ax.set_title(title)
    axes[0].invert_yaxis()
    fig.suptitle("digit-instances, unseen test identities: the paper's Tables II-IV at the demo's recipe")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="training seeds (default 0 1)")
    parser.add_argument("--tables", action="store_true",
                        help="the paper's Tables II-IV at the demo's recipe (TABLE_CONFIGS) instead of the "
                             "edge-head ablation; --max-identities, --epochs, --size, --lr and "
                             "--identities-per-batch do not apply")
    parser.add_argument("--only", help="comma-separated configurations (default all: "
                                       f"{', '.join(CONFIGS)}; with --tables {', '.join(TABLE_CONFIGS)})")
    add_base_arguments(parser)
    parser.add_argument("--out", type=Path, help="output folder (benchmarks/results/ablation, with --tables "
                                                 "benchmarks/results/ablation_tables)")
    parser.add_argument("--rows", type=Path, nargs="+", metavar="FILE",
                        help="no training: tabulate rows.json files of earlier runs (e.g. one per seed)")
    args = parser.parse_args(argv)
    configs = TABLE_CONFIGS if args.tables else CONFIGS
    out = args.out or Path("benchmarks/results") / ("ablation_tables" if args.tables else "ablation")
    names = list(configs) if args.only is None else args.only.split(",")
    unknown = [name for name in names if name not in configs]
    if unknown:
        parser.error(f"--only: unknown configuration(s) {', '.join(unknown)}; "
                     f"choose from {', '.join(configs)}")
    out.mkdir(parents=True, exist_ok=True)
    if args.rows:
        rows = [row for path in args.rows for row in json.loads(path.read_text(encoding="utf-8"))]
        return report(rows, out, args.tables)
    settings = tables_settings(args) if args.tables else base_settings(args)
    data = load_demo_splits(settings.data)
    most_k = largest_k(data)
    too_large = [name for name in names if configs[name][0].get("k", settings.model.k) > most_k]
    if too_large:
        print(f"skipping {', '.join(too_large)}: k above {most_k}, the most these data allow", flush=True)
        names = [name for name in names if name not in too_large]
    print(f"digit-instances: {len(data.fit)} fit, {len(data.val)} validation, {len(data.query)} query, "
          f"{len(data.gallery)} gallery images; {len(names)} configurations x {len(args.seeds)} seeds",
          flush=True)  # fmt: skip
    rows = []
    for seed in args.seeds:
        for name in names:
            rows.append(run_one(name, seed, settings, data, configs))
            row = rows[-1]
            print(f"{name:18s} seed {seed}: link AUC {row['link_auc']:.3f} (cosine {row['cosine_auc']:.3f}), "
                  f"mAP {row['mAP']:.3f} (graph rule {row['graph_rule_mAP']:.3f}, distance "
                  f"{row['distance_mAP']:.3f}, k-recip. {row['k_reciprocal_mAP']:.3f}), NMI {row['nmi']:.3f} "
                  f"(cosine {row['cosine_nmi']:.3f}), val {row['val_score']:.3f}, {row['seconds']:.0f} s",
                  flush=True)  # fmt: skip
            (out / "rows.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return report(rows, out, args.tables)


def report(rows: list[dict], out: Path, tables: bool = False) -> int:
    """table.md and ablation.png of `rows` in `out` (the Tables II-IV layout with `tables`); prints
    the table and the configuration chosen on validation."""
    configs, columns = (TABLE_CONFIGS, TABLE_COLUMNS) if tables else (CONFIGS, COLUMNS)
    table = summarise(rows, configs, columns)
    chosen = max(table, key=lambda name: table[name]["val_score"][0])
    text = markdown(table, chosen, sorted({row["seed"] for row in rows}), configs, columns)
    (out / "table.md").write_text(text, encoding="utf-8")
    (plot_tables if tables else plot)(table, out / "ablation.png")
    print(text)
    print(f"chosen on the validation identities: {chosen}; wrote {out}/table.md and ablation.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
