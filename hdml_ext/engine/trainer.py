"""Training loop for HDML (images) and HDMLOnFeatures (pre-extracted features).

Defaults are the paper's schedule (IV-B): SGD, lr 1e-3, momentum 0.9, weight decay 1e-4,
20 epochs, lr x0.1 at epochs 12, 16 and 18, random horizontal flip (the 256x128 resize is
the image readers' job). Every setting is a `TrainConfig` field.

    trainer = Trainer(model, images, labels, TrainConfig(epochs=20), out_dir="runs/market")
    history = trainer.fit()                      # or fit(resume="runs/market/checkpoint.pt")

Per epoch: the F-Graphs are rebuilt from the model's current embeddings when
epoch % rebuild_every == 0 (epoch 0 from the initial model), the PK batches of focus nodes
are drawn (`hdml_ext.data.sampler`), and each batch is one SGD step on L = L1 + L2. At each
epoch's end the scheduler steps and `out_dir/checkpoint.pt` is replaced atomically with the
model, optimiser, scheduler, sampler (kNN table), epoch, step and RNG states, so that
`fit(resume=...)` continues exactly as if never interrupted. Each step appends a JSON line to
`out_dir/log.jsonl`: {"epoch", "step", "loss", "node", "link", "lr", "seconds"}.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..data.sampler import FGraphBatch, FGraphSampler, RowSource, gather_rows, item_tensor, source_length
from .checkpoint import (
    atomic_save,
    capture_rng_state,
    model_record,
    read_checkpoint,
    restore_rng_state,
)

CHECKPOINT_NAME = "checkpoint.pt"
MODEL_NAME = "model.pt"
LOG_NAME = "log.jsonl"


@dataclass
class TrainConfig:
    """Training settings; the defaults are the paper's (IV-B).

    epochs: passes over the training set (each row is a focus node once per epoch).
    lr, momentum, weight_decay: SGD.
    milestones, gamma: lr x gamma after each listed epoch (MultiStepLR, stepped per epoch).
    identities_per_batch, focus_per_identity: P and K of the PK focus batches.
    drop_last: skip an epoch's last batches when they hold fewer than P identities.
    graph_lr_mult: the RE-GCN and edge head learn at lr * graph_lr_mult (1: the paper's single lr).
    rebuild_every: rebuild the F-Graphs from the current embeddings every this many epochs.
    flip: random horizontal flip of each distinct image of a batch (p = 0.5).
    embed_batch_size: images per forward pass when embedding the training set for a rebuild.
    seed: seeds the batch order (with the epoch); the caller seeds model initialisation.
    device: "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
    num_workers: DataLoader workers loading a batch's images (0: in the main process).
    progress: show tqdm progress bars.
    """

    epochs: int = 20
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    milestones: tuple[int, ...] = (12, 16, 18)
    gamma: float = 0.1
    identities_per_batch: int = 4
    focus_per_identity: int = 4
    drop_last: bool = False
    graph_lr_mult: float = 1.0
    rebuild_every: int = 1
    flip: bool = True
    embed_batch_size: int = 128
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        for name in (
            "epochs",
            "identities_per_batch",
            "focus_per_identity",
            "rebuild_every",
            "embed_batch_size",
        ):
            _check_int(name, getattr(self, name), 1)
        for name in ("seed", "num_workers"):
            _check_int(name, getattr(self, name), 0)
        for name in ("lr", "momentum", "weight_decay", "gamma", "graph_lr_mult"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(f"train.{name} should be a finite number >= 0, got {value!r}")
        if self.lr <= 0:
            raise ValueError(f"train.lr should be > 0, got {self.lr}")
        if isinstance(self.milestones, (str, bytes)) or not hasattr(self.milestones, "__iter__"):
            raise ValueError(f"train.milestones should be a list of epochs, got {self.milestones!r}")
        self.milestones = tuple(self.milestones)
        for m in self.milestones:
            _check_int("milestones entries", m, 1)
        if not isinstance(self.device, str):
            raise ValueError(f"train.device should be a string like 'cpu' or 'cuda', got {self.device!r}")

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Build from a dict; unknown keys raise ValueError naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown train setting(s) {', '.join('train.' + u for u in unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        return cls(**values)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["milestones"] = list(self.milestones)
        return out


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"train.{name} should be an int >= {minimum}, got {value!r}")


#: Parameter name prefixes of the graph half of HDML (RE-GCN and edge head).
GRAPH_PREFIXES = ("regcn.", "edge_head.")


def _param_groups(model: nn.Module, lr: float, graph_lr_mult: float) -> list[dict]:
    """One SGD group at `lr`, or two when graph_lr_mult != 1: the graph half at lr * graph_lr_mult."""
    if graph_lr_mult == 1.0:
        return [{"params": list(model.parameters())}]
    graph, rest = [], []
    for name, param in model.named_parameters():
        (graph if name.startswith(GRAPH_PREFIXES) else rest).append(param)
    groups = [{"params": rest}] if rest else []
    return [*groups, {"params": graph, "lr": lr * graph_lr_mult}]


def resolve_device(device: str | torch.device) -> torch.device:
    """ "auto" -> CUDA when available, else CPU; anything else as torch.device."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def is_feature_model(model: nn.Module) -> bool:
    """Whether `model` scores F-Graphs of fixed features (HDMLOnFeatures) rather than images."""
    return type(model).__name__ == "HDMLOnFeatures"


@torch.no_grad()
def embed_rows(
    model: nn.Module,
    source: RowSource,
    *,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    progress: bool = False,
    desc: str = "embed",
) -> Tensor:
    """Embeddings [N, D] of every row of `source`, in eval mode, batch by batch, on the CPU.

    For HDML the rows are images passed through `model.embed` (a data set is read by
    `num_workers` DataLoader workers, 0: in this process); for HDMLOnFeatures they are
    features, returned as they are (float32).
    """
    n = source_length(source)
    if is_feature_model(model):
        return gather_rows(source, torch.arange(n)).float().cpu()
    was_training = model.training
    model.eval()
    device = torch.device(device)
    if isinstance(source, Tensor) or num_workers == 0:
        batches = (
            gather_rows(source, torch.arange(start, min(start + batch_size, n)))
            for start in range(0, n, batch_size)
        )
    else:
        batches = iter(
            torch.utils.data.DataLoader(
                _Items(source), batch_size=batch_size, num_workers=num_workers, collate_fn=_collate_images
            )
        )
    parts = []
    try:
        for images in tqdm(batches, total=-(-n // batch_size), desc=desc, disable=not progress, leave=False):
            parts.append(model.embed(images.to(device)).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(parts) if parts else torch.empty(0)


def _collate_images(images: list) -> Tensor:
    return torch.stack(images)


class _ImageLoader:
    """Loads the distinct rows of each batch, in the main process or through DataLoader workers."""

    def __init__(self, source: RowSource, num_workers: int) -> None:
        self.source = source
        self.num_workers = num_workers if not isinstance(source, Tensor) else 0

    def __call__(self, batches: list[FGraphBatch]):
        if self.num_workers == 0:
            for batch in batches:
                yield gather_rows(self.source, batch.image_ids)
            return
        loader = torch.utils.data.DataLoader(
            _Items(self.source),
            batch_sampler=[b.image_ids.tolist() for b in batches],
            num_workers=self.num_workers,
            collate_fn=_collate_images,
            persistent_workers=False,
        )
        yield from loader


class _Items(torch.utils.data.Dataset):
    """A data set whose items are reduced to their image tensor (for DataLoader workers)."""

    def __init__(self, source: torch.utils.data.Dataset) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Tensor:
        return item_tensor(self.source[index], index)


class Trainer:
    """Trains an HDML (images) or HDMLOnFeatures (features) model on F-Graph batches.

    Args:
        model: hdml_ext.nn.HDML or HDMLOnFeatures; its k is the F-Graphs' k.
        source: the training rows, [N, 3, H, W] images or [N, D] features as a tensor, or a
            map-style data set of images (see `hdml_ext.data.sampler.RowSource`).
        labels: [N] int64 identity of each row (0..C-1 for HDML's node head).
        config: `TrainConfig` (paper defaults when None).
        out_dir: where checkpoint.pt, model.pt and log.jsonl go (None: nothing is written).
        on_step: called with each step's log record after the step (e.g. for custom logging).
    """

    def __init__(
        self,
        model: nn.Module,
        source: RowSource,
        labels: Tensor,
        config: TrainConfig | None = None,
        *,
        out_dir: str | os.PathLike | None = None,
        on_step: Callable[[dict], None] | None = None,
    ) -> None:
        self.config = config if config is not None else TrainConfig()
        self.device = resolve_device(self.config.device)
        self.model = model.to(self.device)
        self.source = source
        n = source_length(source)
        if labels.dim() != 1 or labels.shape[0] != n:
            raise ValueError(
                f"labels should be [N] = [{n}] to match the training rows, got {tuple(labels.shape)}"
            )
        k = int(model.to_config()["k"])
        self.sampler = FGraphSampler(
            labels,
            k,
            identities_per_batch=self.config.identities_per_batch,
            focus_per_identity=self.config.focus_per_identity,
            seed=self.config.seed,
            drop_last=self.config.drop_last,
        )
        self.optimizer = torch.optim.SGD(
            _param_groups(self.model, self.config.lr, self.config.graph_lr_mult),
            lr=self.config.lr,
            momentum=self.config.momentum,
            weight_decay=self.config.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, list(self.config.milestones), gamma=self.config.gamma
        )
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.on_step = on_step
        self.epoch = 0  # completed epochs
        self.step = 0  # completed steps
        self._loader = _ImageLoader(source, self.config.num_workers)
        self._features = is_feature_model(model)

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        """Everything `fit(resume=...)` needs to continue exactly (see `hdml_ext.engine.checkpoint`)."""
        record = model_record(self.model)
        record.update(
            {
                "train_config": self.config.to_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "sampler": self.sampler.state_dict(),
                "epoch": self.epoch,
                "step": self.step,
                "rng": capture_rng_state(),
            }
        )
        return record

    def load_state_dict(self, record: dict) -> None:
        """Restore a `state_dict` (model, optimiser, scheduler, sampler, counters, RNG states)."""
        missing = [
            key for key in ("optimizer", "scheduler", "sampler", "epoch", "step", "rng") if key not in record
        ]
        if missing:
            raise ValueError(
                f"resume: the checkpoint is a model file, not a training checkpoint "
                f"(no {', '.join(missing)}); resume from {CHECKPOINT_NAME}"
            )
        if record["model_class"] != type(self.model).__name__:
            raise ValueError(
                f"resume: the checkpoint holds a {record['model_class']}, the trainer a "
                f"{type(self.model).__name__}"
            )
        self.model.load_state_dict(record["model_state"])
        self.optimizer.load_state_dict(record["optimizer"])
        self.scheduler.load_state_dict(record["scheduler"])
        self.sampler.load_state_dict(record["sampler"])
        self.epoch, self.step = int(record["epoch"]), int(record["step"])
        restore_rng_state(record["rng"])

    def save_checkpoint(self, path: str | os.PathLike | None = None) -> Path:
        """Write `state_dict()` atomically to `path` (default out_dir/checkpoint.pt)."""
        if path is None:
            if self.out_dir is None:
                raise ValueError("save_checkpoint needs a path when the trainer has no out_dir")
            path = self.out_dir / CHECKPOINT_NAME
        return atomic_save(self.state_dict(), path)

    # ----------------------------------------------------------------- training
    def _rebuild(self, epoch: int) -> None:
        embeddings = embed_rows(
            self.model,
            self.source,
            batch_size=self.config.embed_batch_size,
            device=self.device,
            num_workers=self.config.num_workers,
            progress=self.config.progress,
            desc=f"epoch {epoch + 1}: rebuilding F-Graphs",
        )
        self.sampler.rebuild(embeddings.to(self.device))

    def _needs_rebuild(self, epoch: int) -> bool:
        if self.sampler.knn_idx is None:
            return True
        # Features never change: their graphs are built once.
        return not self._features and epoch % self.config.rebuild_every == 0

    def _augment(self, images: Tensor) -> Tensor:
        if not self.config.flip or self._features or images.dim() != 4:
            return images
        flip = torch.rand(images.shape[0]) < 0.5
        if bool(flip.any()):
            images = images.clone()
            images[flip.to(images.device)] = images[flip.to(images.device)].flip(-1)
        return images

    def _loss(self, batch: FGraphBatch, rows: Tensor) -> tuple[Tensor, dict]:
        nodes = batch.nodes.to(self.device)
        adj = batch.adj.to(self.device)
        labels = batch.labels.to(self.device)
        if self._features:
            link_logits = self.model(rows[nodes], adj)
            link = self.model.loss(link_logits, labels[nodes])
            return link, {"node": torch.zeros((), device=self.device), "link": link}
        output = self.model(rows, nodes, adj)
        return self.model.loss(output, labels, nodes)

    def train_epoch(self, epoch: int) -> list[dict]:
        """One epoch (0-based `epoch`): rebuild if due, then one SGD step per PK batch."""
        if self._needs_rebuild(epoch):
            self._rebuild(epoch)
        self.model.train()
        focus_batches = self.sampler.focus_batches(epoch)
        batches = [self.sampler.collate(focus) for focus in focus_batches]
        records = []
        bar = tqdm(
            total=len(batches),
            desc=f"epoch {epoch + 1}/{self.config.epochs}",
            disable=not self.config.progress,
            leave=False,
        )
        started = time.perf_counter()
        for batch, rows in zip(batches, self._loader(batches)):
            rows = self._augment(rows.to(self.device, non_blocking=True))
            lr = self.optimizer.param_groups[0]["lr"]
            total, parts = self._loss(batch, rows)
            if not torch.isfinite(total):
                raise RuntimeError(
                    f"the loss became {total.item()} at epoch {epoch + 1}, step {self.step + 1}: "
                    f"lower train.lr or check the data"
                )
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            self.optimizer.step()
            self.step += 1
            now = time.perf_counter()
            record = {
                "epoch": epoch + 1,
                "step": self.step,
                "loss": total.item(),
                "node": float(parts["node"].detach()),
                "link": float(parts["link"].detach()),
                "lr": lr,
                "seconds": now - started,
            }
            started = now
            records.append(record)
            self._log(record)
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.4f}", link=f"{record['link']:.4f}")
            if self.on_step is not None:
                self.on_step(record)
        bar.close()
        self.scheduler.step()
        self.epoch = epoch + 1
        return records

    def _log(self, record: dict) -> None:
        if self.out_dir is None:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / LOG_NAME, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def _truncate_log(self) -> None:
        """Drop log lines past the resumed step (steps of an epoch that was interrupted)."""
        if self.out_dir is None or not (self.out_dir / LOG_NAME).is_file():
            return
        path = self.out_dir / LOG_NAME
        with open(path, encoding="utf-8") as handle:
            kept = [line for line in handle if line.strip() and json.loads(line)["step"] <= self.step]
        tmp = path.with_name(f".{LOG_NAME}.tmp")
        tmp.write_text("".join(kept), encoding="utf-8")
        os.replace(tmp, path)

    def fit(self, resume: str | os.PathLike | None = None) -> list[dict]:
        """Train up to `config.epochs`, from scratch or from a training checkpoint.

        Returns the step records of this call (the same dicts as log.jsonl). A checkpoint is
        written after every epoch, and model.pt (config and weights only) at the end.
        """
        if resume is not None:
            self.load_state_dict(read_checkpoint(resume))
            self._truncate_log()
        history: list[dict] = []
        for epoch in range(self.epoch, self.config.epochs):
            history.extend(self.train_epoch(epoch))
            if self.out_dir is not None:
                self.save_checkpoint()
        if self.out_dir is not None:
            atomic_save(
                {
                    **model_record(self.model),
                    "train_config": self.config.to_dict(),
                    "epoch": self.epoch,
                    "step": self.step,
                },
                self.out_dir / MODEL_NAME,
            )
        return history


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The step records of a log.jsonl."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
