"""Does the graph pay off on a strong embedding? The demo's whole evaluation, on frozen embeddings.

    python benchmarks/bench_strong_embedding.py [--seeds 0 1] [--size 16] [--cnn-epochs 8]
                                                [--head-epochs 20] [--k 10]
                                                [--out benchmarks/results/strong]

The demo-sized HDML model is weak (rank-1 about 0.27 on unseen identities), and
bench_context.py found that a weak embedding leaves little in the neighbourhood for the graph to
add. Here the embedding is calibrate_digit_instances.py's tiny CNN, trained on the demo's fit
identities of digit-instances at --size x --size (rank-1 about 0.6); the graph half
(HDMLOnFeatures: RE-GCN (256, 128), the paper's edge head with the cosine prior, with and without
the overlap prior, k = --k) is trained on the frozen fit embeddings. Besides link AUC over all
held-out kNN edges, it reports link AUC within a focus (`within_focus_auc`: each node's own k
edges, averaged over nodes): graph ranking only reorders a query's own neighbours, so that is the
part of a link AUC gain ranking can use. Everything after that is the
demo's own evaluation code (hdml_ext.demo.evaluate) on the unseen identities: graph
ranking against distance ranking and k-reciprocal re-ranking of the same embeddings (of all
queries at once, the reference's way, and of each query with the gallery alone, as graph ranking
sees a query), link-score propagation against cosine propagation (thresholds and max_size chosen
on the validation identities), and link AUC against cosine AUC on the held-out kNN edges.

A second table bounds what any link score can do in the paper's ranking rule (a query's k graph
neighbours reordered by score, then the rest by distance), on each seed's embeddings: perfect
scores (1 for the query's identity, else 0), k-reciprocal re-ranking's order (of all queries at
once, and of each query alone) applied to the same k items only, the unlearned score
cos + w * o_i (o_i: the share of item i's k nearest, taken over the gallery and the query,
inside the query's F-Graph; what the overlap prior reads), and cos plus the cosine of the
embeddings averaged twice over the F-Graph (what a weightless two-layer GCN would see).

Writes table.md (mean and half-range over --seeds, and the command) and rows.json to --out.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch.nn import functional

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from calibrate_digit_instances import embed, train_cnn

from hdml_ext.demo.config import demo_settings
from hdml_ext.demo.evaluate import Clusterer, Embedded, reid_row, score_embeddings, score_hdml
from hdml_ext.demo.splits import DemoSplits, load_demo_splits
from hdml_ext.engine.checkpoint import seed_everything
from hdml_ext.engine.trainer import Trainer
from hdml_ext.graph import query_fgraphs
from hdml_ext.nn import HDMLOnFeatures
from hdml_ext.nn.base import undirected
from hdml_ext.reid.ranking import graph_order
from hdml_ext.reid.rerank import k_reciprocal_order

GCN_DIMS = (256, 128)
CNN_BATCH, CNN_LR = 64, 3e-3
#: Columns: (heading, row key); the no-graph baselines come from the same seed's CNN embeddings.
COLUMNS = (
    ("link AUC", "link_auc"), ("cosine AUC", "cosine_auc"),
    ("link AUC within a focus", "link_within_focus_auc"),
    ("cosine AUC within a focus", "cosine_within_focus_auc"),
    ("graph mAP", "mAP"), ("distance mAP", "distance_mAP"), ("k-recip. mAP", "k_reciprocal_mAP"),
    ("k-recip. per query mAP", "k_reciprocal_per_query_mAP"),
    ("graph R1", "rank1"), ("distance R1", "distance_rank1"), ("graph mINP", "mINP"),
    ("NMI", "nmi"), ("cosine NMI", "cosine_nmi"), ("BCubed F", "bcubed_f"),
    ("cosine BCubed F", "cosine_bcubed_f"), ("pair F", "pairwise_f"), ("cosine pair F", "cosine_pairwise_f"),
)  # fmt: skip


#: The weights w of the unlearned ranking score cos + w * o_i.
OVERLAP_WEIGHTS = (0.25, 0.5, 1.0)


def _rank_of(orders: Iterable[tuple[slice, torch.Tensor]]) -> torch.Tensor:
    """[Q, G] each gallery item's place in a ranking given block by block."""
    return torch.cat([torch.argsort(order, dim=1) for _, order in orders])


def ranking_bounds(emb: Embedded, data: DemoSplits, k: int) -> dict[str, float]:
    """mAP of the paper's ranking rule (module doc) under scores that need no training."""
    graphs = query_fgraphs(emb.query, emb.gallery, k)
    nodes, adj = graphs.batch(torch.arange(emb.query.shape[0]))
    neighbours = graphs.knn_idx  # [Q, k]
    overlap = adj[:, 1:, :].sum(-1).double() / k
    unit = functional.normalize(torch.cat([emb.gallery, emb.query]).double(), dim=1)[nodes]  # [Q, k+1, D]
    cosine = (unit[:, 1:] * unit[:, :1]).sum(-1)
    # Each node's embedding averaged twice over its F-Graph neighbours (with itself), as a
    # two-layer GCN without weights would: does the graph's neighbourhood reorder the top k?
    loops = undirected(adj).double() + torch.eye(k + 1, dtype=torch.float64)
    mean = loops / loops.sum(-1, keepdim=True)
    smoothed = functional.normalize(mean @ (mean @ unit), dim=-1)
    smoothed_cosine = (smoothed[:, 1:] * smoothed[:, :1]).sum(-1)
    together = _rank_of(k_reciprocal_order(emb.query, emb.gallery))
    apart = _rank_of(k_reciprocal_order(emb.query, emb.gallery, queries_together=False))
    scores = {
        "perfect link scores": (data.gallery.labels[neighbours] == data.query.labels[:, None]).double(),
        f"k-reciprocal order of the top {k} only": -together.gather(1, neighbours).double(),
        f"k-reciprocal per query, order of the top {k} only": -apart.gather(1, neighbours).double(),
        **{f"cos + {w:g} * o_i (unlearned)": cosine + w * overlap for w in OVERLAP_WEIGHTS},
        "cos + cos of the F-Graph-averaged embeddings (unlearned)": cosine + smoothed_cosine,
    }
    return {name: reid_row(graph_order(emb.query, emb.gallery, neighbours, score), data)["mAP"]
            for name, score in scores.items()}


def run_seed(seed: int, size: int, cnn_epochs: int, head_epochs: int, k: int) -> tuple[list[dict], dict]:
    """One CNN and, on its frozen embeddings, the graph half with and without the overlap prior:
    one row per configuration with the HDML metrics and the same seed's no-graph baselines; and
    the seed's `ranking_bounds`."""
    settings = demo_settings()
    settings.data.height = settings.data.width = size
    settings.model.k = k
    data = load_demo_splits(settings.data)
    net = train_cnn(SimpleNamespace(train=data.fit, num_train_classes=data.num_fit_classes), cnn_epochs,
                    CNN_BATCH, CNN_LR, seed)
    emb = Embedded(*(embed(net, split.images) for split in (data.fit, data.val, data.query, data.gallery)))
    clusterer = Clusterer(data, settings)
    plain, _ = score_embeddings("cnn", emb, data, clusterer)
    baselines = {"distance_mAP": plain["cnn"]["mAP"], "distance_rank1": plain["cnn"]["rank1"],
                 "k_reciprocal_mAP": plain["cnn_k_reciprocal"]["mAP"],
                 "k_reciprocal_per_query_mAP": plain["cnn_k_reciprocal_per_query"]["mAP"],
                 "cosine_nmi": plain["cnn"]["nmi"],
                 "cosine_bcubed_f": plain["cnn"]["bcubed_f"], "cosine_pairwise_f": plain["cnn"]["pairwise_f"]}
    rows = []
    for overlap in (False, True):
        seed_everything(seed)
        head = HDMLOnFeatures(emb.fit.shape[1], k=k, gcn_dims=GCN_DIMS, cosine_prior=True,
                              overlap_prior=overlap)
        train = replace(settings.train, epochs=head_epochs, milestones=[max(1, head_epochs - 2)], seed=seed,
                        max_positive_share=None, progress=False)
        Trainer(head, emb.fit, data.fit.labels, train).fit()
        result, detail = score_hdml(head.eval(), emb, data, clusterer)
        within = {key: detail["diagnostics"]["test"][key]
                  for key in ("link_within_focus_auc", "cosine_within_focus_auc")}
        name = "cosine prior + overlap prior" if overlap else "cosine prior"
        rows.append({"configuration": name, "seed": seed, **baselines, **result, **within})
        print(f"seed {seed}, {name}: " + ", ".join(f"{label} {rows[-1][key]:.3f}" for label, key in COLUMNS),
              flush=True)
    bounds = {"seed": seed, **ranking_bounds(emb, data, k)}
    print(f"seed {seed}, ranking bounds: {bounds}", flush=True)
    return rows, bounds


def markdown(rows: list[dict], bounds: list[dict], command: str, seconds: float) -> str:
    lines = [f"`{command}` ({seconds:.0f} s). Mean ± half-range over seeds "
             f"{sorted({row['seed'] for row in rows})}; every column on the unseen identities.", "",
             "| graph half | " + " | ".join(label for label, _ in COLUMNS) + " |",
             "|---|" + "---|" * len(COLUMNS)]
    for name in dict.fromkeys(row["configuration"] for row in rows):
        values = [[row[key] for row in rows if row["configuration"] == name] for _, key in COLUMNS]
        cells = [f"{np.mean(v):.3f} ± {(max(v) - min(v)) / 2:.3f}" for v in values]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Graph-ranking mAP under scores that need no training (the query's k F-Graph neighbours "
              "reordered by the score, the rest by distance):", "", "| score | mAP |", "|---|---|"]
    for name in (key for key in bounds[0] if key != "seed"):
        values = [bound[name] for bound in bounds]
        lines.append(f"| {name} | {np.mean(values):.3f} ± {(max(values) - min(values)) / 2:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds (0 1)")
    parser.add_argument("--size", type=int, default=16, help="image height and width in pixels (16)")
    parser.add_argument("--cnn-epochs", type=int, default=8, help="epochs of the CNN (8)")
    parser.add_argument("--head-epochs", type=int, default=20, help="epochs of the graph half (20)")
    parser.add_argument("--k", type=int, default=10, help="neighbours per F-Graph (10, the demo's)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/strong"), help="output folder")
    args = parser.parse_args(argv)
    for name in ("size", "cnn_epochs", "head_epochs", "k"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} should be >= 1, got {getattr(args, name)}")
    started = time.perf_counter()
    rows, bounds = [], []
    for seed in args.seeds:
        seed_rows, seed_bounds = run_seed(seed, args.size, args.cnn_epochs, args.head_epochs, args.k)
        rows += seed_rows
        bounds.append(seed_bounds)
    command = shlex.join(["python", "benchmarks/bench_strong_embedding.py",
                          *(argv if argv is not None else sys.argv[1:])])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rows.json").write_text(json.dumps({"rows": rows, "ranking_bounds": bounds}, indent=1) + "\n",
                                        encoding="utf-8")
    text = markdown(rows, bounds, command, time.perf_counter() - started)
    (args.out / "table.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
