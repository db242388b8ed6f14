"""Ranked-list pictures of a finished `hdml demo` run (docs/demo/visrank/): trains nothing, reads
the run folder's settings.yaml and hdml/model.pt, rebuilds the same query and gallery splits,
and draws a few queries under graph ranking above distance ranking.

    hdml demo --out results/demo                       # about 5 minutes on 2 cores
    python benchmarks/visrank_demo.py --run results/demo --out docs/demo/visrank [--count 4]
                                      [--ranking graph] [--top 10]

Queries are spread evenly over those with a true match (`hdml_ext.reid.visrank.visrank_queries`),
so the same run always gives the same pictures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hdml_ext.data import input_pipeline
from hdml_ext.demo.config import DemoSettings
from hdml_ext.demo.splits import load_demo_splits
from hdml_ext.engine import embed_rows, load_settings
from hdml_ext.engine.checkpoint import load_model
from hdml_ext.reid.visrank import VISRANK_RANKINGS, write_visrank


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", default="results/demo", help="the `hdml demo --out` folder")
    parser.add_argument("--out", default="docs/demo/visrank", help="folder for the PNGs")
    parser.add_argument("--count", type=int, default=4, help="queries to draw")
    parser.add_argument(
        "--ranking", default="graph", choices=VISRANK_RANKINGS, help="the ranking drawn above distance"
    )
    parser.add_argument("--top", type=int, default=10, help="gallery images per row")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run = Path(args.run)
    settings_file, model_file = run / "settings.yaml", run / "hdml" / "model.pt"
    for needed in (settings_file, model_file):
        if not needed.is_file():
            print(f"visrank_demo: {needed} is missing: run `hdml demo --out {run}` first", file=sys.stderr)
            return 2
    settings = load_settings(DemoSettings, settings_file)
    data = load_demo_splits(settings.data)
    model = load_model(model_file)
    with torch.no_grad():
        query, gallery = embed_rows(model, data.query.images), embed_rows(model, data.gallery.images)
    pipeline = input_pipeline(settings.data)
    paths = write_visrank(
        args.out, model, query, gallery, data.query.images, data.gallery.images, data.query.labels,
        data.gallery.labels, data.query.camids, data.gallery.camids, count=args.count, ranking=args.ranking,
        top=args.top, mean=pipeline["mean"], std=pipeline["std"],
    )  # fmt: skip
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
