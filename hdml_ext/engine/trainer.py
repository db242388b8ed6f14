"""The training loop for either model of `hdml_ext.nn.MODELS` (paper IV-B schedule by default);
docs/training.md describes the loop, checkpoints, the log and the distributed rules."""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .._checks import require_class_labels
from ..data.rows import RowSource, iter_rows, source_length
from ..data.sampler import FGraphBatch, FGraphSampler
from ..data.streams import stream_generator
from ..nn import model_name
from . import distributed
from .checkpoint import (
    atomic_save,
    capture_rng_state,
    model_record,
    read_checkpoint,
    remove_stale_temporaries,
    restore_rng_state,
)
from .distributed import local_device, resolve_backend
from .inference import embed_rows
from .optimizer import build_optimizer
from .run_folder import (
    CHECKPOINT_NAME,
    LOG_NAME,
    MODEL_NAME,
    append_record,
    read_log,
    save_model_file,
    truncate_log,
)
from .settings import TrainConfig
from .tensorboard_log import TensorBoardLog

__all__ = ["Trainer", "read_log"]


class Trainer:
    """Trains a model of `hdml_ext.nn.MODELS` (HDML on images, HDMLOnFeatures on features) on
    F-Graph batches, through the model interface alone (docs/training.md).

    Args:
        model: a model of `hdml_ext.nn.MODELS`; its k is the F-Graphs' k.
        source: the training rows, [N, 3, H, W] images or [N, D] features as a tensor, or a
            map-style data set of images (see `hdml_ext.data.rows.RowSource`).
        labels: [N] integer identity of each row, in [0, num_classes) for HDML's node head
            (>= 0 for a model without it); checked here, ValueError naming the first bad row.
        config: `TrainConfig` (paper defaults when None).
        out_dir: where checkpoint.pt, model.pt and log.jsonl go (None: nothing is written).
        on_step: called with each step's log record after the step (e.g. for custom logging),
            on every rank (the records are the same on all).
        input_pipeline: how the image rows were read ({"height", "width", "mean", "std"}, see
            `hdml_ext.data.input_pipeline`), recorded in checkpoint.pt and model.pt.

    When a torch.distributed process group of W > 1 processes is active (see
    `hdml_ext.engine.distributed.init_distributed`), the model is wrapped in
    DistributedDataParallel and every rank trains on its share of each epoch's batches
    (docs/training.md); build the trainer on every rank with the same arguments. `self.model` stays
    the bare model (what checkpoints hold).
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
        input_pipeline: dict | None = None,
    ) -> None:
        self.input_pipeline = input_pipeline
        self.config = config if config is not None else TrainConfig()
        self.device = local_device(self.config.device)
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        self._main = self.rank == 0
        self._check_device_options()
        self.source = source
        n = source_length(source)
        require_class_labels("labels", labels, n, getattr(model, "num_classes", None))
        if n < self.world_size:
            raise ValueError(f"{n} training rows cannot be shared among {self.world_size} processes")
        # Feature rows are their own embeddings: they never change, so neither do the F-Graphs.
        self._fixed_embeddings = model.input_kind == "features"
        self.model = model.to(self.device)
        if self.config.channels_last:
            self.model.to(memory_format=torch.channels_last)  # 4-D (conv) weights only
        if self.world_size > 1:
            if self.config.sync_bn:
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            # DDP broadcasts rank 0's parameters and buffers: every rank starts from the same model.
            self._net: nn.Module = DistributedDataParallel(
                self.model, device_ids=[self.device] if self.device.type == "cuda" else None
            )
        else:
            self._net = self.model
        self.sampler = FGraphSampler(
            labels,
            model.k,
            identities_per_batch=self.config.identities_per_batch,
            focus_per_identity=self.config.focus_per_identity,
            seed=self.config.seed,
            drop_last=self.config.drop_last,
            backend=self.config.knn_backend,
            max_positive_share=self.config.max_positive_share,
        )
        self.optimizer, self.scheduler = build_optimizer(self.model, self.config)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.config.amp == "fp16")
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.on_step = on_step
        self.events = TensorBoardLog(self.out_dir) if self.out_dir is not None else None  # rank 0 writes
        self.epoch = 0  # completed epochs
        self.step = 0  # completed steps
        self.written: list[Path] = []  # files the last `fit` wrote

    def _check_device_options(self) -> None:
        config = self.config
        if config.amp == "fp16" and self.device.type != "cuda":
            raise ValueError(
                f"train.amp='fp16' needs a CUDA device (float16 autocast with a GradScaler), the "
                f"device is {self.device}; use train.amp=bf16 on the CPU"
            )
        if config.sync_bn and self.world_size > 1 and self.device.type != "cuda":
            raise ValueError(
                f"train.sync_bn needs CUDA devices (torch's SyncBatchNorm has no CPU kernel), the "
                f"device is {self.device}; leave it false on the CPU"
            )
        if self.world_size > 1:
            backend = resolve_backend(config.dist_backend, self.device)
            if backend != torch.distributed.get_backend():
                raise ValueError(
                    f"train.dist_backend resolves to {backend!r}, but the process group runs "
                    f"{torch.distributed.get_backend()!r}"
                )

    def _autocast(self) -> contextlib.AbstractContextManager:
        """autocast to train.amp's dtype (a no-op context for "none")."""
        if self.config.amp == "none":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.config.amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        """Everything `fit(resume=...)` needs to continue exactly (see `hdml_ext.engine.checkpoint`)."""
        record = model_record(self.model, self.input_pipeline)
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
        if self.scaler.is_enabled():
            record["scaler"] = self.scaler.state_dict()
        return record

    def load_state_dict(self, record: dict) -> None:
        """Restore a `state_dict` (model, optimiser, scheduler, sampler, counters, RNG states,
        and the fp16 GradScaler when both sides use one)."""
        missing = [
            key for key in ("optimizer", "scheduler", "sampler", "epoch", "step", "rng") if key not in record
        ]
        if missing:
            raise ValueError(
                f"resume: the checkpoint is a model file, not a training checkpoint "
                f"(no {', '.join(missing)}); resume from {CHECKPOINT_NAME}"
            )
        if record["model_class"] != model_name(self.model):
            raise ValueError(
                f"resume: the checkpoint holds a {record['model_class']}, the trainer a "
                f"{model_name(self.model)}"
            )
        self.model.load_state_dict(record["model_state"])
        self.optimizer.load_state_dict(record["optimizer"])
        self.scheduler.load_state_dict(record["scheduler"])
        self.sampler.load_state_dict(record["sampler"])
        if self.scaler.is_enabled() and "scaler" in record:
            self.scaler.load_state_dict(record["scaler"])
        self.epoch, self.step = int(record["epoch"]), int(record["step"])
        restore_rng_state(record["rng"])

    def save_checkpoint(self, path: str | os.PathLike | None = None) -> Path:
        """Write `state_dict()` atomically to `path` (default out_dir/checkpoint.pt).

        Call it on rank 0 only when distributed (`fit` does so and holds the others at a barrier).
        """
        if path is None:
            if self.out_dir is None:
                raise ValueError("save_checkpoint needs a path when the trainer has no out_dir")
            path = self.out_dir / CHECKPOINT_NAME
        return atomic_save(self.state_dict(), path)

    # ----------------------------------------------------------------- training
    def _rebuild(self, epoch: int) -> None:
        """New kNN table from the current model, the same on every rank."""
        # Every rank embeds its share with rank 0's BatchNorm statistics; shares are gathered.
        distributed.broadcast_buffers(self.model)
        n = source_length(self.source)
        with self._autocast():
            part = embed_rows(
                self.model,
                self.source,
                batch_size=self.config.embed_batch_size,
                device=self.device,
                num_workers=self.config.num_workers,
                progress=self.config.progress and self._main,
                desc=f"epoch {epoch + 1}: rebuilding F-Graphs",
                rows=distributed.shard_rows(n),
            )
        embeddings = distributed.all_gather_rows(part, n)
        if self._main:
            self.sampler.rebuild(embeddings.to(self.device))
        if self.world_size > 1:
            graphs = self.sampler.fgraphs if self._main else None
            knn_idx = distributed.broadcast(None if graphs is None else graphs.knn_idx)
            knn_dist = distributed.broadcast(None if graphs is None else graphs.knn_dist)
            if not self._main:
                self.sampler.set_table(knn_idx, knn_dist)

    def _needs_rebuild(self, epoch: int) -> bool:
        if self.sampler.fgraphs is None:
            return True
        return not self._fixed_embeddings and epoch % self.config.rebuild_every == 0

    def rank_batches(self, epoch: int) -> list[tuple[int, Tensor]]:
        """This rank's batches of `epoch`: (global batch index, focus ids int64 [B]) pairs,
        world_size * accumulate dividing the epoch's global batch count (docs/training.md)."""
        batches = self.sampler.focus_batches(epoch)
        group = self.world_size * self.config.accumulate
        extra = -len(batches) % group
        if extra and self.config.drop_last:
            batches = batches[: len(batches) - (group - extra)]
        elif extra:
            batches = batches + [batches[i % len(batches)] for i in range(extra)]
        if not batches:
            raise ValueError(
                f"epoch {epoch + 1} has fewer PK batches than world_size * accumulate = {group}, and "
                f"train.drop_last drops them all: use smaller batches or drop_last=false"
            )
        return [(i, batches[i]) for i in range(self.rank, len(batches), self.world_size)]

    def _prepare(self, rows: Tensor, epoch: int, index: int) -> Tensor:
        """A batch's rows on the device; images flipped at random and channels_last if asked."""
        rows = rows.to(self.device, non_blocking=True)
        if rows.dim() != 4:
            return rows
        if self.config.flip:
            gen = stream_generator(self.config.seed, epoch, index)
            flip = (torch.rand(rows.shape[0], generator=gen) < 0.5).to(rows.device)
            if bool(flip.any()):
                rows = rows.clone()
                rows[flip] = rows[flip].flip(-1)
        if self.config.channels_last:
            rows = rows.contiguous(memory_format=torch.channels_last)
        return rows

    def _loss(self, batch: FGraphBatch, rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(total, node, link) losses of a batch; node is 0 for a model without the node task."""
        nodes = batch.nodes.to(self.device)
        adj = batch.adj.to(self.device)
        labels = batch.labels.to(self.device)
        with self._autocast():
            total, parts = self.model.loss(self._net(rows, nodes, adj), labels, nodes)
        node = parts.get("node", torch.zeros((), device=self.device))
        return total, node, parts["link"]

    def train_epoch(self, epoch: int) -> list[dict]:
        """One epoch (0-based `epoch`): rebuild if due, then one SGD step per `accumulate` PK
        batches of this rank (and as many of every other rank)."""
        if self._needs_rebuild(epoch):
            self._rebuild(epoch)
        self.model.train()
        plan = self.rank_batches(epoch)
        batches = [self.sampler.collate(focus) for _, focus in plan]
        accumulate = self.config.accumulate
        records = []
        bar = tqdm(
            total=len(batches) // accumulate,
            desc=f"epoch {epoch + 1}/{self.config.epochs}",
            disable=not (self.config.progress and self._main),
            leave=False,
        )
        started = time.perf_counter()
        sums = torch.zeros(3, device=self.device)
        loaded = iter_rows(self.source, [batch.image_ids for batch in batches], self.config.num_workers)
        for i, ((index, _), batch, rows) in enumerate(zip(plan, batches, loaded)):
            last = (i + 1) % accumulate == 0
            if i % accumulate == 0:
                self.optimizer.zero_grad(set_to_none=True)
                sums.zero_()
            rows = self._prepare(rows, epoch, index)
            # DDP all-reduces the gradients in the backward pass of a step's last batch only.
            sync = contextlib.nullcontext() if last or self._net is self.model else self._net.no_sync()
            with sync:
                total, node, link = self._loss(batch, rows)
                self.scaler.scale(total / accumulate).backward()
            sums += torch.stack([total, node, link]).detach().float() / accumulate
            if not last:
                continue
            loss, node, link = distributed.all_reduce_mean(sums).tolist()
            if not math.isfinite(loss):
                raise RuntimeError(
                    f"the loss became {loss} at epoch {epoch + 1}, step {self.step + 1}: "
                    f"lower train.lr or check the data"
                )
            lr = self.optimizer.param_groups[0]["lr"]
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.step += 1
            now = time.perf_counter()
            record = {
                "epoch": epoch + 1,
                "step": self.step,
                "loss": loss,
                "node": node,
                "link": link,
                "lr": lr,
                "seconds": now - started,
            }
            started = now
            records.append(record)
            if self.out_dir is not None and self._main:
                append_record(self.out_dir / LOG_NAME, record)
                self.events.write_step(record)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", link=f"{link:.4f}")
            if self.on_step is not None:
                self.on_step(record)
        bar.close()
        self.scheduler.step()
        self.epoch = epoch + 1
        return records

    def _write_on_rank0(self, write: Callable[[], object]) -> None:
        """Run `write` on rank 0 while the other ranks wait at a barrier."""
        if self._main:
            write()
        distributed.barrier()

    def fit(self, resume: str | os.PathLike | None = None) -> list[dict]:
        """Train up to `config.epochs`, from scratch or from a training checkpoint.

        Returns the step records of this call (the same dicts as log.jsonl). A checkpoint is
        written after every epoch, and model.pt (config and weights only) at the end, by rank 0
        (when an epoch was trained or model.pt is missing); `self.written` lists the files
        written. Temporaries of killed writes are removed first. Distributed, every rank reads the
        `resume` checkpoint (a path all ranks can read).
        """
        out_dir = self.out_dir
        self.written = []
        if out_dir is not None and self._main and out_dir.is_dir():
            remove_stale_temporaries(out_dir)
        if resume is not None:
            self.load_state_dict(read_checkpoint(resume))
            if out_dir is not None:
                self._write_on_rank0(lambda: truncate_log(out_dir / LOG_NAME, self.step))
        history: list[dict] = []
        for epoch in range(self.epoch, self.config.epochs):
            history.extend(self.train_epoch(epoch))
            if out_dir is not None:
                self._write_on_rank0(self.save_checkpoint)
                self.written += [out_dir / LOG_NAME, out_dir / CHECKPOINT_NAME]
        if out_dir is not None and (history or not (out_dir / MODEL_NAME).is_file()):
            self._write_on_rank0(
                lambda: save_model_file(
                    out_dir, self.model, self.config.to_dict(), self.epoch, self.step, self.input_pipeline
                )
            )
            self.written.append(out_dir / MODEL_NAME)
        self.written = sorted(set(self.written))
        return history
