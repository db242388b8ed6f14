"""Does ranking with learned edges beat k-reciprocal re-ranking on unseen identities?

    python benchmarks/bench_reid.py [--seeds 0 1 2] [--models A.pt B.pt C.pt] [--quick]
                                    [--out benchmarks/results/reid]

For each seed, the demo's HDML (`hdml_ext.demo`: digit-instances, resnet18 HA-Net, k = 10,
both priors) is trained with that seed (or read from --models, one per seed, saved by
`hdml_ext.engine.checkpoint.model_record`), and the unseen test identities are ranked by:

- distance, and k-reciprocal re-ranking (Zhong et al. 2017, k1 20, k2 6, lambda 0.3) of each
  query with the gallery alone (per query) and of all queries at once (together): the baselines
  a Re-ID user already has, on HDML's own embeddings;
- the paper's graph rule (each query's k F-Graph neighbours by link score, then distance);
- re-ranking with learned edges (`hdml_ext.reid.link_rerank`), each query alone and all queries
  together, with the settings chosen on the validation identities (`hdml_ext.reid.selection`,
  its SEARCH_SPACE) — the test identities choose nothing;
- HDML's default: the better on validation of the graph rule and inductive re-ranking with
  learned edges (what `hdml demo` reports as hdml);
- re-ranking with learned edges at `LinkRerankSettings`' defaults (what `hdml evaluate` ranks by:
  the setting with the best mean validation score over the demo's three seeds).

Writes rows.json (one row per seed and method), table.md (mean and half-range over seeds) and
prints the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from torch import nn

from hdml_ext.demo import demo_settings
from hdml_ext.demo.evaluate import (
    Embedded,
    choose_rankings,
    distance_ranking,
    embed_splits,
    graph_ranking,
    k_reciprocal_ranking,
    link_ranking,
    validation_reid,
)
from hdml_ext.demo.run import train_model
from hdml_ext.demo.splits import DemoSplits, load_demo_splits
from hdml_ext.engine import load_model
from hdml_ext.reid import LinkRerankSettings, choose_link_rerank
from hdml_ext.reid.selection import SEARCH_SPACE

#: Table rows: (name, what it is, inductive: each query ranked with the gallery alone).
METHODS = (
    ("distance", "Euclidean distance of HDML's embeddings", True),
    ("k_reciprocal_per_query", "k-reciprocal re-ranking, each query with the gallery alone", True),
    ("graph_rule", "the paper's rule: F-Graph neighbours by link score, then distance", True),
    ("link_rerank", "re-ranking with learned edges, each query alone (validated settings)", True),
    ("link_rerank_defaults", "the same at LinkRerankSettings' defaults (hdml evaluate's ranking)", True),
    ("distance_weights", "link_rerank with distance-kernel weights (validated): no link scores", True),
    ("hdml_default", "HDML's validated default (graph rule or link_rerank)", True),
    ("k_reciprocal", "k-reciprocal re-ranking of all queries at once", False),
    ("link_rerank_together", "re-ranking with learned edges of all queries at once (validated)", False),
)
KEYS = ("mAP", "rank1", "mINP")


def distance_weights_choice(model: nn.Module, emb: Embedded, data: DemoSplits) -> LinkRerankSettings:
    """The inductive candidate with distance-kernel weights (`weights="distance"`, over
    SEARCH_SPACE's normalise, k2 and lambda_value) best on the validation identities: the same
    sets and Jaccard as link_rerank, without the link head's scores (a hypothesis test)."""
    space = {**SEARCH_SPACE, "weights": ("distance",), "power": (1.0,)}
    query, gallery, pids = validation_reid(emb, data)
    settings, _, _ = choose_link_rerank(model, query, gallery, *pids, space=space)
    return settings


def run_seed(seed: int, model_path: str | None, quick: bool) -> list[dict]:
    """Every METHODS row of one seed's model on the test identities, and the choices made."""
    settings = demo_settings(quick=quick)
    settings = replace(settings, train=replace(settings.train, seed=seed, progress=False))
    data = load_demo_splits(settings.data)
    if model_path is None:
        model, _, _ = train_model("hdml", settings, data, None, lambda line: None)
    else:
        model = load_model(model_path).eval()
    emb = embed_splits(model, data)
    started = time.perf_counter()
    choices = choose_rankings(model, emb, data, settings.model.k)
    results = {
        "distance": distance_ranking(emb, data),
        "k_reciprocal_per_query": k_reciprocal_ranking(emb, data, queries_together=False),
        "graph_rule": graph_ranking(model, emb, data, settings.model.k),
        "link_rerank": link_ranking(model, emb, data, choices["link_rerank"]),
        "link_rerank_defaults": link_ranking(model, emb, data, LinkRerankSettings()),
        "distance_weights": link_ranking(model, emb, data, distance_weights_choice(model, emb, data)),
        "k_reciprocal": k_reciprocal_ranking(emb, data, queries_together=True),
        "link_rerank_together": link_ranking(model, emb, data, choices["link_rerank_together"]),
    }
    results["hdml_default"] = results["graph_rule" if choices["default"] == "graph" else "link_rerank"]
    seconds = time.perf_counter() - started
    summary = {
        "default": choices["default"], "validation": choices["validation"],
        "link_rerank": choices["link_rerank"].to_dict(),
        "link_rerank_together": choices["link_rerank_together"].to_dict(),
    }  # fmt: skip
    return [{"seed": seed, "method": name, **{key: float(results[name][key]) for key in KEYS},
             "choices": summary, "seconds_all_methods": seconds} for name, _, _ in METHODS]  # fmt: skip


def table(rows: list[dict]) -> dict:
    """method -> key -> (mean, half-range) over seeds."""
    out = {}
    for name, _, _ in METHODS:
        mine = [row for row in rows if row["method"] == name]
        out[name] = {key: (float(np.mean([r[key] for r in mine])),
                           (max(r[key] for r in mine) - min(r[key] for r in mine)) / 2) for key in KEYS}
    return out


def markdown(summary: dict, rows: list[dict]) -> str:
    seeds = sorted({row["seed"] for row in rows})
    lines = [
        f"Unseen digit-instances test identities; mean ± half-range over seeds {seeds}. Settings of "
        "link_rerank chosen on the validation identities.\n",
        "| method | setting | mAP | rank-1 | mINP | what it is |",
        "|---|---|---|---|---|---|",
    ]
    for name, what, inductive in METHODS:
        cells = " | ".join(f"{summary[name][key][0]:.4f} ± {summary[name][key][1]:.4f}" for key in KEYS)
        setting = "each query alone" if inductive else "all queries at once"
        lines.append(f"| {name} | {setting} | {cells} | {what} |")
    lines.append("")
    for seed in seeds:
        choices = next(row["choices"] for row in rows if row["seed"] == seed)
        lines.append(f"- seed {seed}: default {choices['default']}; link_rerank {choices['link_rerank']}; "
                     f"link_rerank_together {choices['link_rerank_together']}; validation "
                     f"{json.dumps(choices['validation'])}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="training seeds (default 0 1 2)")
    parser.add_argument("--models", nargs="+", help="one trained model.pt per seed instead of training")
    parser.add_argument("--quick", action="store_true", help="the demo's --quick settings (a smoke run)")
    parser.add_argument("--out", default="benchmarks/results/reid", help="output folder")
    args = parser.parse_args(argv)
    if args.models is not None and len(args.models) != len(args.seeds):
        parser.error(f"--models should name one file per seed ({len(args.seeds)}), got {len(args.models)}")
    rows = []
    for position, seed in enumerate(args.seeds):
        model_path = None if args.models is None else args.models[position]
        rows += run_seed(seed, model_path, args.quick)
        print(f"seed {seed}: " + ", ".join(f"{r['method']} {r['mAP']:.4f}/{r['rank1']:.4f}"
                                           for r in rows if r["seed"] == seed), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rows.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    text = markdown(table(rows), rows)
    (out / "table.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
