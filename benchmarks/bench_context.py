"""Is there anything in the neighbourhood for the graph to add to cosine similarity?

    python benchmarks/bench_context.py [--config relative] [--seed 0] [--epochs 5]
                                       [--out benchmarks/results/context]

The graph branch can only beat cosine similarity on unseen identities if a node's neighbourhood
tells something its own embedding does not. This benchmark measures that bound on the same
kNN edges bench_ablation.py scores (k = the model's k), in three parts:

(a) Unlearned neighbourhood signals on the held-out (test) identities of one model trained as
    bench_ablation.py trains it (configuration --config, seed --seed): the AUC with which each
    separates same-identity from different-identity edges (f, i), beside cosine(f, i). The
    signals are the ones graph methods build on: the Jaccard overlap of the two nodes' k'-NN
    sets (k' = 5, 10, 20; Zhong et al.'s k-reciprocal encoding rests on it), cosine plus that
    overlap, the cosine of i to the centroid of f's k'-neighbourhood, and reciprocity (f among
    i's k' nearest). Also: the share of wrong edges whose two identities render the same digit
    (the same scikit-learn class), against the share among random identity pairs.
(b) The same signals on synthetic open-set identities with isotropic noise (unit-norm centres
    in 64 dimensions, 4-30 views each like digit-instances, noise levels --noise): what they
    give when the confusions are random rather than systematic.
(c) The graph half alone (HDMLOnFeatures with the model's k, gcn_dims and link options) trained
    on the frozen embeddings of the fit identities for --head-epochs epochs, with and without
    the cosine prior: link AUC on the fit and on the test edges, beside cosine. A head that
    gains on fit edges and loses on test edges is learning the training identities.
(d) The graph half (k = 10, gcn_dims (256, 128), --head-epochs[1] epochs) trained on synthetic
    identities of part (b) (150 to train, 100 unseen to test, noise --synthetic-head-noise),
    for each edge input with and without the cosine prior: can it use a neighbourhood that
    does carry information?

Writes context.md (the tables and the command) and context.json to --out.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score
from torch.nn import functional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ablation import CONFIGS, add_base_arguments, base_settings

from hdml_ext.engine.checkpoint import seed_everything
from hdml_ext.engine.clustering import link_edges, similarity_edges
from hdml_ext.engine.demo.evaluate import embed_splits
from hdml_ext.engine.demo.run import train_model
from hdml_ext.engine.demo.splits import load_demo_splits
from hdml_ext.engine.demo.thresholds import edge_diagnostics
from hdml_ext.engine.trainer import Trainer
from hdml_ext.nn import HDMLOnFeatures

NEIGHBOURHOODS = (5, 10, 20)


def neighbour_signals(features: torch.Tensor, labels: np.ndarray, k: int) -> dict[str, float]:
    """AUC of cosine and of each unlearned neighbourhood signal on the k-NN edges (f, i) of
    `features` [N, D] (Euclidean neighbours, self excluded, as the library's kNN graphs), "same
    identity" from `labels` [N]; plus "positive_share", the share of same-identity edges."""
    features = features.float()
    unit = functional.normalize(features, dim=1)
    similarity = unit @ unit.T
    distance = torch.cdist(features, features)
    distance.fill_diagonal_(float("inf"))
    order = distance.argsort(dim=1)
    num = labels.shape[0]
    src = torch.arange(num).repeat_interleave(k)
    dst = order[:, :k].reshape(-1)
    same = labels[src.numpy()] == labels[dst.numpy()]
    cosine = similarity[src, dst]
    signals = {"cosine": cosine}
    for size in NEIGHBOURHOODS:
        member = torch.zeros(num, num)
        member.scatter_(1, order[:, :size], 1.0)
        member.fill_diagonal_(1.0)
        overlap = (member[src] * member[dst]).sum(dim=1) / ((member[src] + member[dst]) > 0).sum(dim=1)
        centroid = functional.normalize(member @ unit, dim=1)
        signals[f"jaccard@{size}"] = overlap
        signals[f"cosine+jaccard@{size}"] = cosine + overlap
        signals[f"centroid@{size}"] = (centroid[src] * unit[dst]).sum(dim=1)
        signals[f"cosine+reciprocal@{size}"] = cosine + member[dst, src]
    result = {name: float(roc_auc_score(same, values.numpy())) for name, values in signals.items()}
    return {"positive_share": float(same.mean()), **result}


def same_digit_shares(features: torch.Tensor, identities: np.ndarray, k: int) -> dict[str, float]:
    """Of the wrong (Euclidean) k-NN edges of held-out digit-instances rows (identities = source image rows),
    the share whose two identities are the same digit; and that share among all pairs of
    distinct held-out identities (what chance gives)."""
    digit = load_digits().target
    distance = torch.cdist(features.float(), features.float())
    distance.fill_diagonal_(float("inf"))
    dst = distance.topk(k, dim=1, largest=False).indices.reshape(-1).numpy()
    src = np.repeat(np.arange(identities.shape[0]), k)
    wrong = identities[src] != identities[dst]
    distinct = np.unique(identities)
    pairs = digit[distinct][:, None] == digit[distinct][None, :]
    chance = (pairs.sum() - distinct.size) / (distinct.size * (distinct.size - 1))
    return {"wrong_edges_same_digit": float((digit[identities[src]] == digit[identities[dst]])[wrong].mean()),
            "random_pairs_same_digit": float(chance)}


def synthetic_identities(num_identities: int, noise: float, seed: int, dim: int = 64
                         ) -> tuple[torch.Tensor, np.ndarray]:
    """Open-set identities: unit-norm centres in `dim` dimensions, 4-30 views each (uniform),
    each view = centre + noise * N(0, I). Returns (features [N, dim], labels [N])."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((num_identities, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = np.repeat(np.arange(num_identities), rng.integers(4, 31, num_identities))
    views = centres[labels] + noise * rng.standard_normal((labels.size, dim))
    return torch.from_numpy(views.astype(np.float32)), labels


def head_on_frozen(embeddings, data, settings, model_changes: dict, epochs: int, cosine_prior: bool,
                   seed: int) -> dict[str, float]:
    """Train the graph half alone on the frozen fit embeddings; link and cosine AUC on the fit
    and test edges."""
    model_settings = replace(settings.model, **model_changes)
    seed_everything(seed)
    head = HDMLOnFeatures(embeddings.fit.shape[1], k=model_settings.k, gcn_dims=model_settings.gcn_dims,
                          attention=model_settings.attention, edge_input=model_settings.edge_input,
                          relative_input=model_settings.relative_input,
                          balanced_link_loss=model_settings.balanced_link_loss, cosine_prior=cosine_prior)
    train = replace(settings.train, epochs=epochs, milestones=[max(1, epochs - 2)], seed=seed)
    Trainer(head, embeddings.fit, data.fit.labels, train).fit()
    head.eval()
    result = {}
    for split, features, labels in (("fit", embeddings.fit, data.fit.labels.numpy()),
                                    ("test", embeddings.test, data.test_labels)):
        edges = scored_edges(head, features, labels)
        result[f"{split}_link_auc"], result[f"{split}_cosine_auc"] = edges["link_auc"], edges["cosine_auc"]
    return result


def scored_edges(head: HDMLOnFeatures, features: torch.Tensor, labels: np.ndarray) -> dict:
    """`edge_diagnostics` of the kNN edges of `features` [N, D] scored by `head` and by cosine."""
    with torch.no_grad():
        link = link_edges(head, features, head.k)
        return edge_diagnostics(link, similarity_edges(features, head.k), labels)


def head_on_synthetic(noise: float, edge_input: str, cosine_prior: bool, epochs: int, settings,
                      seed: int) -> dict[str, float]:
    """Train the graph half on 150 synthetic identities (`synthetic_identities`, seed 1) and
    score the kNN edges of 100 unseen ones (seed 2): link and cosine AUC, positive share."""
    train_features, train_labels = synthetic_identities(150, noise, seed=1)
    test_features, test_labels = synthetic_identities(100, noise, seed=2)
    seed_everything(seed)
    head = HDMLOnFeatures(train_features.shape[1], k=10, gcn_dims=(256, 128), edge_input=edge_input,
                          cosine_prior=cosine_prior)
    train = replace(settings.train, epochs=epochs, milestones=[max(1, epochs - 2)], seed=seed,
                    max_positive_share=None)
    Trainer(head, train_features, torch.from_numpy(train_labels), train).fit()
    head.eval()
    edges = scored_edges(head, test_features, test_labels)
    return {"noise": noise, "edge_input": edge_input, "cosine_prior": cosine_prior, "epochs": epochs,
            "positive_share": edges["same_class_share"], "link_auc": edges["link_auc"],
            "cosine_auc": edges["cosine_auc"]}


def signal_table(rows: dict[str, dict[str, float]]) -> list[str]:
    names = [name for name in next(iter(rows.values())) if name != "positive_share"]
    lines = ["| edges | same-identity share | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 2)]
    for label, row in rows.items():
        cells = " | ".join(f"**{row[n]:.3f}**" if row[n] > row["cosine"] else f"{row[n]:.3f}" for n in names)
        lines.append(f"| {label} | {row['positive_share']:.2f} | {cells} |")
    return lines


def markdown(report: dict) -> str:
    head_rows = ["| head trained on frozen fit embeddings | epochs | fit link AUC | fit cosine AUC | "
                 "test link AUC | test cosine AUC |", "|---|---|---|---|---|---|"]
    for row in report["heads"]:
        aucs = " | ".join(f"{row[key]:.3f}" for key in ("fit_link_auc", "fit_cosine_auc", "test_link_auc",
                                                         "test_cosine_auc"))
        head_rows.append(f"| {row['head']} | {row['epochs']} | {aucs} |")
    synthetic_rows = ["| synthetic noise | edge_input | cosine prior | epochs | same-identity share | "
                      "test link AUC | test cosine AUC |", "|---|---|---|---|---|---|---|"]
    for row in report["synthetic_heads"]:
        synthetic_rows.append(f"| {row['noise']:g} | {row['edge_input']} | {row['cosine_prior']} | "
                              f"{row['epochs']} | {row['positive_share']:.2f} | {row['link_auc']:.3f} | "
                              f"{row['cosine_auc']:.3f} |")
    digits = report["digits"]
    return "\n".join([
        f"`{report['command']}` ({report['seconds']:.0f} s)", "",
        f"AUC of each signal on the k = {report['k']} nearest-neighbour edges (bold: above cosine). "
        f"Model: {report['config']}, seed {report['seed']}, trained as bench_ablation.py trains it.", "",
        *signal_table(report["signals"]), "",
        "Wrong held-out edges whose two identities are the same digit: "
        f"{digits['wrong_edges_same_digit']:.2f} "
        f"(random pairs of held-out identities: {digits['random_pairs_same_digit']:.2f}).", "",
        *head_rows, "",
        "The graph half on synthetic identities (150 to train, 100 unseen to test):", "",
        *synthetic_rows, "",
    ]) + "\n"  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="relative", choices=list(CONFIGS),
                        help="the bench_ablation configuration to train (relative)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (0)")
    parser.add_argument("--noise", type=float, nargs="+", default=[0.2, 0.24, 0.28],
                        help="noise levels of the synthetic identities of part (b) (0.2 0.24 0.28)")
    parser.add_argument("--head-epochs", type=int, nargs="+", default=[5, 20, 60],
                        help="epochs of the heads trained on frozen embeddings in part (c) (5 20 60)")
    parser.add_argument("--synthetic-head-noise", type=float, nargs="+", default=[0.2],
                        help="noise levels of the synthetic identities of part (d) (0.2)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/context"), help="output folder")
    add_base_arguments(parser)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    settings = base_settings(args)
    settings = replace(settings, train=replace(settings.train, seed=args.seed, progress=False))
    changes, _ = CONFIGS[args.config]
    model_changes = {key: value for key, value in changes.items() if key != "train"}
    settings = replace(settings, train=replace(settings.train, **changes.get("train", {})))
    data = load_demo_splits(settings.data)
    print(f"training {args.config} (seed {args.seed}) on {len(data.fit)} fit images", flush=True)
    model, _, _ = train_model(args.config, settings, data, None, print, **model_changes)
    embeddings = embed_splits(model.cpu(), data)
    k = model.k
    signals = {
        "fit identities": neighbour_signals(embeddings.fit, data.fit.labels.numpy(), k),
        "held-out identities": neighbour_signals(embeddings.test, data.test_labels, k),
    }
    num_test_identities = int(np.unique(data.test_labels).size)
    for noise in args.noise:
        features, labels = synthetic_identities(num_test_identities, noise, seed=args.seed)
        signals[f"synthetic, noise {noise:g}"] = neighbour_signals(features, labels, k)
    print("signals done", flush=True)
    heads = []
    for epochs in args.head_epochs:
        for prior in (False, True):
            edge_input = replace(settings.model, **model_changes).edge_input
            name = f'edge_input "{edge_input}"{" + cosine prior" if prior else ""}'
            aucs = head_on_frozen(embeddings, data, settings, model_changes, epochs, prior, args.seed)
            heads.append({"head": name, "epochs": epochs, **aucs})
            print(f"  {name}, {epochs} epochs: {heads[-1]}", flush=True)
    synthetic_heads = []
    epochs = args.head_epochs[min(1, len(args.head_epochs) - 1)]
    for noise in args.synthetic_head_noise:
        for edge_input in ("node", "relative"):
            for prior in (False, True):
                row = head_on_synthetic(noise, edge_input, prior, epochs, settings, args.seed)
                synthetic_heads.append(row)
                print(f"  synthetic: {synthetic_heads[-1]}", flush=True)
    report = {
        "command": shlex.join(["python", "benchmarks/bench_context.py",
                               *(argv if argv is not None else sys.argv[1:])]),
        "config": args.config, "seed": args.seed, "k": k, "signals": signals,
        "digits": same_digit_shares(embeddings.test, data.test_labels, k), "heads": heads,
        "synthetic_heads": synthetic_heads,
        "seconds": time.perf_counter() - started,
    }  # fmt: skip
    (args.out / "context.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    text = markdown(report)
    (args.out / "context.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
