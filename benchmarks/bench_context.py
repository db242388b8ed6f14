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
    overlap, the cosine of i to the centroid of f's k'-neighbourhood, reciprocity (f among
    i's k' nearest), and the share of i's k nearest inside f's F-Graph (what the model's
    overlap prior reads), alone and as cosine + half of it. Also: the share of wrong edges whose
    two identities render the same digit
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
(e) A stronger embedding (--strong-cnn-epochs > 0): the tiny CNN of
    calibrate_digit_instances.py at 16x16 (rank-1 about 0.63 on unseen identities, against
    0.17-0.26 for the demo-sized model). The held-out identities are split in two halves: the
    signals of part (a) on half B, and the graph half (the model's k and gcn_dims, the paper's
    edge input, the cosine prior, with and without the overlap prior; --head-epochs[1] epochs)
    trained on half A, or on the CNN's own training identities, scored on half B's edges.

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

from hdml_ext.cluster import edge_diagnostics
from hdml_ext.cluster.scoring import link_edges, similarity_edges
from hdml_ext.data import load_digit_instances_reid
from hdml_ext.demo.evaluate import embed_splits
from hdml_ext.demo.run import train_model
from hdml_ext.demo.splits import load_demo_splits
from hdml_ext.engine.checkpoint import seed_everything
from hdml_ext.engine.trainer import Trainer
from hdml_ext.nn import HDMLOnFeatures
from hdml_ext.nn.priors import neighbour_overlap
from hdml_ext.ops import fgraph_adjacency

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
    overlap = fgraph_overlap(order[:, :k])
    signals[f"overlap@{k}"] = overlap
    signals[f"cosine+overlap@{k}/2"] = cosine + 0.5 * overlap
    result = {name: float(roc_auc_score(same, values.numpy())) for name, values in signals.items()}
    return {"positive_share": float(same.mean()), **result}


def fgraph_overlap(knn_idx: torch.Tensor) -> torch.Tensor:
    """[N * k]: for each edge (f, i) of the kNN table [N, k], the share of i's k nearest
    neighbours inside f's F-Graph (f and its k neighbours): the overlap prior's input
    (`hdml_ext.nn.priors.neighbour_overlap` of the directed F-Graph adjacency)."""
    return neighbour_overlap(fgraph_adjacency(knn_idx, symmetric=False)).reshape(-1)


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


def strong_embedding(settings, k: int, gcn_dims: tuple[int, ...], cnn_epochs: int, head_epochs: int,
                     seed: int) -> dict:
    """Part (e): the calibration CNN's embeddings of digit-instances at 16x16; the signals on half B
    of the held-out identities, and graph halves trained on half A or on the CNN's training
    identities, scored on half B."""
    from calibrate_digit_instances import embed, ranking, train_cnn

    splits = load_digit_instances_reid(height=16, width=16, seed=seed)
    net = train_cnn(splits, cnn_epochs, 64, 3e-3, seed)
    query, gallery = embed(net, splits.query.images), embed(net, splits.gallery.images)
    cnn = ranking(splits.query, splits.gallery, query, gallery)
    held = torch.cat([query, gallery])
    held_labels = np.concatenate([splits.query.labels.numpy(), splits.gallery.labels.numpy()])
    identities = np.unique(held_labels)
    np.random.default_rng(seed).shuffle(identities)
    in_a = torch.from_numpy(np.isin(held_labels, identities[: identities.size // 2]))
    half_a, half_b = (held[in_a], held_labels[in_a.numpy()]), (held[~in_a], held_labels[~in_a.numpy()])
    trained = (embed(net, splits.train.images), splits.train.labels.numpy())
    sources = {"held-out half A": half_a, "the CNN's training identities": trained}
    heads = []
    for source, (features, labels) in sources.items():
        for overlap in (False, True):
            seed_everything(seed)
            head = HDMLOnFeatures(features.shape[1], k=k, gcn_dims=gcn_dims, cosine_prior=True,
                                  overlap_prior=overlap)
            train = replace(settings.train, epochs=head_epochs, milestones=[max(1, head_epochs - 2)],
                            seed=seed, max_positive_share=None)
            Trainer(head, features, torch.from_numpy(labels), train).fit()
            head.eval()
            edges = scored_edges(head, *half_b)
            heads.append({"trained on": source, "overlap_prior": overlap, "epochs": head_epochs,
                          "link_auc": edges["link_auc"], "cosine_auc": edges["cosine_auc"]})
            print(f"  strong embedding: {heads[-1]}", flush=True)
    return {"cnn_rank1": cnn["rank1"], "cnn_mAP": cnn["mAP"], "signals": neighbour_signals(*half_b, k),
            "heads": heads}


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
        *strong_lines(report.get("strong")),
    ]) + "\n"  # fmt: skip


def strong_lines(strong: dict | None) -> list[str]:
    """Part (e)'s tables, or nothing when it was not run."""
    if strong is None:
        return []
    rows = ["| graph half trained on | overlap prior | epochs | link AUC on half B | cosine AUC |",
            "|---|---|---|---|---|"]
    for row in strong["heads"]:
        rows.append(f"| {row['trained on']} | {row['overlap_prior']} | {row['epochs']} | "
                    f"{row['link_auc']:.3f} | {row['cosine_auc']:.3f} |")
    return [f"A stronger embedding (the calibration CNN at 16x16: rank-1 {strong['cnn_rank1']:.3f}, mAP "
            f"{strong['cnn_mAP']:.3f} on unseen identities); signals on half B of the held-out "
            "identities:", "",
            *signal_table({"held-out half B": strong["signals"]}), "", *rows, ""]


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
    parser.add_argument("--strong-cnn-epochs", type=int, default=8,
                        help="epochs of part (e)'s CNN; 0 skips part (e) (8)")
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
    strong = None
    if args.strong_cnn_epochs > 0:
        strong = strong_embedding(settings, k, tuple(model.regcn.dims), args.strong_cnn_epochs, epochs,
                                  args.seed)
    report = {
        "command": shlex.join(["python", "benchmarks/bench_context.py",
                               *(argv if argv is not None else sys.argv[1:])]),
        "config": args.config, "seed": args.seed, "k": k, "signals": signals,
        "digits": same_digit_shares(embeddings.test, data.test_labels, k), "heads": heads,
        "synthetic_heads": synthetic_heads, "strong": strong,
        "seconds": time.perf_counter() - started,
    }  # fmt: skip
    (args.out / "context.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    text = markdown(report)
    (args.out / "context.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
