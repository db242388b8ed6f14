"""`run_demo`: train HDML and a node-only baseline, then rank and cluster the held-out identities
against the baselines a Re-ID or clustering user would pick instead (docs/demo.md)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from torch import nn

from ..engine.checkpoint import seed_everything
from ..engine.models import new_model
from ..engine.run_folder import write_settings
from ..engine.settings import dump_settings
from ..engine.trainer import Trainer
from .config import DemoSettings, demo_settings
from .evaluate import Clusterer, Embedded, distance_ranking, embed_splits, row, score_embeddings, score_hdml
from .report import dataset_note, diagnostics_text, format_table, plot, ranking_text, readme
from .splits import DemoSplits, load_demo_splits


def run_demo(
    out_dir: str | os.PathLike, settings: DemoSettings | None = None, *, log: Callable[[str], None] = print
) -> dict:
    """Run the demo (docs/demo.md) into `out_dir`; returns the results.json dict."""
    settings = settings or demo_settings()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_settings(out, dump_settings(settings))
    started = time.perf_counter()
    data = load_demo_splits(settings.data)
    log(
        f"{data.dataset}: {data.num_train} train images ({len(data.fit)} to fit, {len(data.val)} to "
        f"validate), {len(data.query)} query, {len(data.gallery)} gallery images "
        f"({settings.data.height}x{settings.data.width}), {data.num_fit_classes} identities to fit"
    )
    log(dataset_note(data))
    hdml, hdml_history, hdml_seconds = train_model("hdml", settings, data, out, log)
    base, base_history, base_seconds = train_model("node_only", settings, data, out, log, link_weight=0.0)
    emb = {"hdml": embed_splits(hdml, data), "node_only": embed_splits(base, data)}
    results, details = evaluate_all(hdml, emb, data, settings, log)

    total = time.perf_counter() - started
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    np.savez_compressed(
        out / "embeddings.npz",
        features=emb["hdml"].test.numpy().astype(np.float32),
        labels=data.test_labels.astype(np.int64),
        hdml_clusters=details["hdml"]["clusters"].astype(np.int64),
    )
    seconds = {"total": total, "train_hdml": hdml_seconds, "train_node_only": base_seconds}
    info = _run_info(seconds, data, details)
    (out / "run_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    (out / "README.md").write_text(readme(results, info, settings, data), encoding="utf-8")
    cmc = {name: detail["cmc"] for name, detail in details.items()}
    embeddings_2d = {name: emb[name].test.numpy() for name in ("hdml", "node_only")}
    plot(out, {"HDML": hdml_history, "node-only": base_history}, cmc, embeddings_2d, data.test_labels)
    log("")
    log(format_table(results))
    log("")
    log(dataset_note(data))
    log(f"wrote {out / 'results.json'}, embeddings.npz and plots in {out}/ ({total:.0f} s in all)")
    return results


def train_model(
    name: str, settings: DemoSettings, data: DemoSplits, out: Path | None, log: Callable[[str], None],
    **model_changes: object,
) -> tuple[nn.Module, list[dict], float]:  # fmt: skip
    """A model built from settings.model with `model_changes` (link_weight=0.0: the node-only
    baseline), trained on the fit split, in eval mode; its step log and training seconds. Step
    logs go to out/name when `out` is given."""
    seed_everything(settings.train.seed)
    model = new_model(replace(settings.model, **model_changes), num_classes=data.num_fit_classes)
    started = time.perf_counter()
    out_dir = None if out is None else out / name
    history = Trainer(model, data.fit.images, data.fit.labels, settings.train, out_dir=out_dir).fit()
    seconds = time.perf_counter() - started
    last = history[-1]
    log(
        f"  trained {name} for {settings.train.epochs} epochs ({len(history)} steps) in {seconds:.0f} s; "
        f"last step loss {last['loss']:.3f} (node {last['node']:.3f}, link {last['link']:.3f})"
    )
    return model.eval(), history, seconds


def evaluate_all(
    hdml: nn.Module, emb: dict[str, Embedded], data: DemoSplits, settings: DemoSettings,
    log: Callable[[str], None],
) -> tuple[dict, dict]:  # fmt: skip
    """results.json ({"dataset", "hdml", "baselines"}) and each row group's details (CMC
    curves, chosen clustering settings, edge diagnostics, HDML's cluster labels)."""
    clusterer = Clusterer(data, settings)
    hdml_row, hdml_detail = score_hdml(hdml, emb["hdml"], data, clusterer)
    log(f"  hdml link edges: {diagnostics_text(hdml_detail['diagnostics'])}")
    log(f"  hdml rankings chosen on validation: {ranking_text(hdml_detail['ranking_choices'])}")
    baselines: dict[str, dict] = {}
    details = {"hdml": hdml_detail}
    baselines.update(hdml_detail["rows"])
    for name, source in (("hdml_embeddings_no_graph", "hdml"), ("node_only", "node_only")):
        rows, details[name] = score_embeddings(name, emb[source], data, clusterer)
        baselines.update(rows)
    pixels = Embedded(*(split.images.flatten(1) for split in (data.fit, data.val, data.query, data.gallery)))
    details["pixels"] = {"cmc": distance_ranking(pixels, data)["cmc"]}
    baselines["pixels"] = row(distance_ranking(pixels, data))
    baselines["pixels_kmeans_true_k"] = row(
        None, clusterer.metrics(clusterer.kmeans_true_k(pixels.test.numpy())), oracle=True
    )
    for name, detail in details.items():
        if "choice" in detail:
            choice = detail["choice"]
            log(f"  {name}: propagation threshold {choice['threshold']:.6g}, max_size {choice['max_size']} "
                f"({choice['chosen_on']})")
    return {"dataset": data.dataset, "hdml": hdml_row, "baselines": baselines}, details


def _run_info(seconds: dict, data: DemoSplits, details: dict) -> dict:
    """run_info.json: seconds, image counts, the chosen clustering settings, link edge diagnostics."""
    return {
        "seconds": seconds,
        "dataset": data.dataset,
        "open_set": data.open_set,
        "num_images": {
            "train": data.num_train, "fit": len(data.fit), "validation": len(data.val),
            "query": len(data.query), "gallery": len(data.gallery),
        },
        "clustering_choices": {name: d["choice"] for name, d in details.items() if "choice" in d},
        "link_edge_diagnostics": details["hdml"]["diagnostics"],
        "ranking_choices": details["hdml"]["ranking_choices"],
        "note": dataset_note(data),
    }  # fmt: skip
