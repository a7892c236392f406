"""The trainer: the paper's recipe on one CPU or many GPUs (torchrun + DistributedDataParallel).

Read it top to bottom: `Trainer.__init__` sets everything up (process group, run folder, data, model,
optimizer, EMA, loss), `Trainer.fit` runs the epochs, `train_one_epoch` is the inner loop (warm-up,
accumulation to the nominal batch `nbs`: 64 in the reference's hyps, 8 in hyp.cpu; AMP on CUDA, EMA
update), `validate` scores the EMA model on rank 0 and `save` writes `weights/best.pt` (when the fitness
improves) and then `last.pt`, each atomically.

Resuming (`resume=RUN_DIR`, or its `weights/last.pt` as in the reference) reloads the run's options and
its `last.pt` (model, EMA, optimizer, AMP scaler, epoch, RNG states, hyperparameters) and re-runs from
the first unfinished epoch. Because the sample order and every augmentation are functions of (seed, epoch,
sample), a run killed at any point and resumed ends with the same weights as an uninterrupted one
(exactly, with `deterministic=True` on CPU).
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import random
import signal
import time
from collections.abc import Collection, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn
from tqdm import tqdm

from yolov7lib import __version__
from yolov7lib.configs import load_hyp
from yolov7lib.engine.checkpoint import (
    load_checkpoint,
    remove_partial_writes,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from yolov7lib.engine.distributed import (
    DEFAULT_TIMEOUT_MINUTES,
    DistContext,
    cleanup_distributed,
    convert_sync_batchnorm,
    init_distributed,
)
from yolov7lib.engine.ema import ModelEMA, unwrap
from yolov7lib.engine.evaluator import EvalResult, evaluate
from yolov7lib.engine.optim import (
    Schedule,
    accumulation_steps,
    build_optimizer,
    freeze_layers,
    frozen_layers,
    nominal_batch,
)
from yolov7lib.engine.runs import create_run_dir, increment_run_dir, read_results
from yolov7lib.engine.val import coco_ground_truth

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "yolov7-tiny-cpu"  # yolov7-tiny at half width (README: its training time on 2 CPU cores)
"""What `train` builds when neither `model` nor `weights` names an architecture."""

RESULT_COLUMNS = [
    "epoch", "box_loss", "obj_loss", "cls_loss", "total_loss", "lr0", "lr1", "lr2",
    "precision", "recall", "map50", "map", "fitness", "time_s",
]  # fmt: skip


RESUME_TAKES_NEW = ("device", "workers", "progress", "dist_timeout")
"""The options a resume takes from its call (where it runs, how it reports); the others are the run's."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during the epochs: `run_dir` is the run folder, `resumable` whether it has a last.pt."""

    def __init__(self, run_dir: Path, resumable: bool) -> None:
        super().__init__(str(run_dir))
        self.run_dir, self.resumable = run_dir, resumable


@dataclass
class TrainOptions:
    """Every option of `yolov7 train`; the defaults train the kit's small model on a CPU."""

    data: str = ""
    model: str = ""  # empty: the architecture of `weights`, or without weights DEFAULT_MODEL
    hyp: str = "cpu"  # hyp.cpu.yaml: tiny's recipe adapted to a short CPU run
    epochs: int = 8
    batch: int = 8  # with hyp cpu's nbs 8: one optimizer step per batch
    img: int = 320
    device: str = ""
    weights: str = ""
    resume: str = ""
    project: str = "runs/train"
    name: str = "exp"
    exist_ok: bool = False
    seed: int = 0
    deterministic: bool = False
    workers: int = 2
    multi_scale: bool = False
    sync_bn: bool = False
    dist_timeout: float = DEFAULT_TIMEOUT_MINUTES  # minutes a process waits for the others (torchrun)
    linear_lr: bool = False
    noval: bool = False
    val_final_only: bool = False  # validate after the last epoch only (the reference's --notest); short runs
    max_batches: int = 0  # stop each epoch after this many batches (0 = all); for tests and smoke runs
    float64: bool = False  # train in double precision on the CPU (numerical verification, e.g. DDP tests)
    freeze: list[int] = field(default_factory=list)  # untrained layers: [N] the first N, [i, j, ...] those
    plots: bool = True
    progress: bool = True
    hyp_overrides: dict[str, Any] = field(default_factory=dict)


RESUME_KEYS = ("epoch", "best_fitness", "model", "model_cfg", "ema", "optimizer", "scaler", "rng")
"""What `Trainer.save` writes into last.pt and a resume restores."""


def latest_run(project: str | Path) -> Path:
    """The most recently written run folder under `project` that has a last.pt (for a bare --resume)."""
    runs = sorted(Path(project).glob("*/weights/last.pt"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise FileNotFoundError(f"no run with weights/last.pt under {str(project)!r} to resume")
    return runs[-1].parent.parent


def _set_seeds(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - legacy global generator, in case a library draws from it
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


class Trainer:
    """One training run (see the module docstring for the order of events)."""

    def __init__(self, opts: TrainOptions, given: Collection[str] | None = None) -> None:
        """`given`: the options the caller set (`train`'s keywords), to name those a resume ignores; None:
        those that differ from TrainOptions' defaults."""
        # a process group the caller set up before is the caller's: left in place when the run ends
        self.owns_process_group = not (dist.is_available() and dist.is_initialized())
        self.ctx: DistContext = init_distributed(opts.device, opts.dist_timeout)
        self.resume_ckpt: dict[str, Any] | None = None
        ignored: list[str] = []
        if opts.resume:
            requested = opts
            opts, self.resume_ckpt = self._load_resume(opts)
            ignored = _ignored_on_resume(requested, opts, given)
        self.opts = opts
        if ignored and self.ctx.is_main:
            logger.warning(
                f"--resume continues {opts.resume} with the options of its opt.yaml; ignored: "
                f"{', '.join(ignored)}"
            )
        if not opts.data:
            raise ValueError("training needs a data config: --data path/to/data.yaml")
        if opts.epochs < 1:
            raise ValueError(f"--epochs must be at least 1, got {opts.epochs}")
        for name in ("workers", "max_batches"):  # -1 batches would train none and report success
            if getattr(opts, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 0, got {getattr(opts, name)}")
        # train(freeze=50) as --freeze 50, a tuple as a list (opt.yaml); frozen_layers checks the values
        opts.freeze = [opts.freeze] if isinstance(opts.freeze, int) else list(opts.freeze)
        _set_seeds(opts.seed + max(self.ctx.rank, 0), opts.deterministic)
        self.device = self.ctx.device
        self.cuda = self.device.type == "cuda"
        if opts.float64 and self.cuda:
            raise ValueError("--float64 is for CPU verification runs; use float32/AMP on GPUs")
        self.dtype = torch.float64 if opts.float64 else torch.float32

        # run folder: named now, written only once the whole set-up has succeeded (at the end), so that a
        # refused start leaves no folder behind and a refused resume leaves its run as it was
        if opts.resume:
            self.run_dir = Path(opts.resume)
        else:
            self.run_dir = increment_run_dir(Path(opts.project), opts.name, opts.exist_ok)
            if self.ctx.distributed:  # every rank must agree on rank 0's folder
                holder = [str(self.run_dir)]
                dist.broadcast_object_list(holder, src=0)
                self.run_dir = Path(holder[0])
        self.weights_dir = self.run_dir / "weights"
        written = [(self.weights_dir / n).resolve() for n in ("last.pt", "best.pt")]
        if not opts.resume and opts.weights and Path(opts.weights).resolve() in written:
            raise ValueError(  # --exist-ok into the run the weights come from: they would be overwritten
                f"--weights {opts.weights} is a checkpoint this run would overwrite (--exist-ok reuses "
                f"{self.run_dir}); choose another --name, or copy the weights out first"
            )
        if self.resume_ckpt is not None and "hyp" in self.resume_ckpt:
            # the run's own values: the --hyp file may have been edited or moved since the run started
            self.hyp = dict(self.resume_ckpt["hyp"])
        else:
            self.hyp = load_hyp(opts.hyp)
            unknown = sorted(set(opts.hyp_overrides) - set(self.hyp))
            if unknown:  # a misspelt key would otherwise train with the value it meant to change
                raise ValueError(f"hyp_overrides: unknown hyperparameter(s) {', '.join(unknown)}")
            self.hyp.update(opts.hyp_overrides)

        # data
        from yolov7lib.data import create_dataloader, load_data_config

        try:
            self.data = load_data_config(opts.data)
        except FileNotFoundError as err:
            if opts.resume and not Path(opts.data).is_absolute() and not Path(opts.data).exists():
                raise FileNotFoundError(
                    f"{err}; --resume reads the run's opt.yaml, whose relative paths are from the folder "
                    f"the run was started in: resume from that folder"
                ) from None
            raise
        self.names = list(self.data.names)
        nc = self.data.nc
        trained = self.resume_ckpt["model_cfg"].get("nc", nc) if self.resume_ckpt is not None else nc
        if trained != nc:  # the head's weights could not be restored: say so before any scan
            raise ValueError(
                f"--resume {self.run_dir}: the run trained {trained} classes but {opts.data} now has {nc}; "
                f"resume with its classes as they were, or start a new run from "
                f"{self.weights_dir / 'last.pt'} with --weights"
            )

        # model
        self.transferred: set[str] = set()  # the state-dict names _transfer loaded from --weights
        self.model = self._build_model(nc).to(self.device, self.dtype)
        # --freeze: layers that stay as loaded; a bad list is refused here, before the images are read
        layers = frozen_layers(opts.freeze, len(unwrap(self.model).model))
        head = unwrap(self.model).head
        self.grid = max(int(head.stride.max()), 32)
        if opts.img % self.grid:
            raise ValueError(f"--img {opts.img} must be a multiple of the model's largest stride {self.grid}")

        world = max(self.ctx.world_size, 1)
        if opts.batch % world:
            raise ValueError(f"--batch {opts.batch} must be divisible by the number of processes {world}")
        self.total_batch = opts.batch
        local_batch = opts.batch // world
        self.train_loader, self.train_set = create_dataloader(
            self.data.splits["train"], opts.img, local_batch, self.grid, hyp=self.hyp, augment=True,
            workers=opts.workers, rank=self.ctx.rank, world_size=world, seed=opts.seed, shuffle=True,
            nc=nc, prefix="train: ", progress=self.ctx.is_main and opts.progress,
        )  # fmt: skip
        self.val_loader = None
        if self.ctx.is_main and not opts.noval and "val" in self.data.splits:
            self.val_loader, _ = create_dataloader(
                self.data.splits["val"], opts.img, local_batch * 2, self.grid, rect=True, pad=0.5,
                workers=opts.workers, nc=nc, prefix="val: ", progress=opts.progress,
            )  # fmt: skip
        self.batches_per_epoch = len(self.train_loader)
        if opts.max_batches:
            self.batches_per_epoch = min(self.batches_per_epoch, opts.max_batches)

        if opts.sync_bn and self.ctx.distributed:
            self.model = convert_sync_batchnorm(self.model, self.device)
        frozen = freeze_layers(unwrap(self.model), opts.freeze)  # before the optimizer and EMA read the flags
        fresh = [k for k in frozen if k not in self.transferred]
        if fresh and self.resume_ckpt is None and self.ctx.is_main:  # frozen at a random initialisation
            source = f"from {opts.weights}" if opts.weights else "(no --weights given)"
            logger.warning(
                f"--freeze: {len(fresh)} of the {len(frozen)} frozen tensors were not loaded {source} and "
                f"keep their random initialisation (first: {fresh[0]})"
            )

        # optimizer, schedule, EMA, AMP, loss
        from yolov7lib.loss import build_loss

        self.optimizer = build_optimizer(self.model, self.hyp, self.total_batch)
        self.schedule = Schedule(
            self.hyp, opts.epochs, self.batches_per_epoch, self.total_batch, opts.linear_lr
        )
        iterations, warm = opts.epochs * self.batches_per_epoch, self.schedule.warmup_iters
        if self.ctx.is_main and warm >= iterations and warm > self.schedule.warmup_asked:  # by the minimum
            logger.warning(  # the reference's 1000-iteration minimum, silent there, decides the whole run
                f"the warm-up lasts warmup_min_iters = {warm} iterations (warmup_epochs asks "
                f"{self.schedule.warmup_asked}), outlasting the run's {iterations}: the learning rates never "
                "reach lr0 x lf(epoch) nor the accumulation its nominal batch (lower warmup_min_iters in hyp "
                f"{opts.hyp}, as hyp cpu's 0, or train longer)"
            )
        self.ema = ModelEMA(self.model) if self.ctx.is_main else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.cuda)
        self.loss_fn = build_loss(self.model, self.hyp, img_size=opts.img)
        self.loss_fn.distribute(world)
        self.start_epoch, self.best_fitness = 0, -1.0
        self.seconds_before = 0.0  # training time of the sessions a resume continues (their last time_s)
        if self.ctx.is_main:  # the set-up succeeded: the run folder and its resolved options
            if not opts.resume:  # made now, so a run that took the name during the set-up keeps its folder
                self.run_dir = create_run_dir(Path(opts.project), opts.name, opts.exist_ok)
                self.weights_dir = self.run_dir / "weights"
            self.weights_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "opt.yaml").write_text(yaml.safe_dump(asdict(opts), sort_keys=False))
            (self.run_dir / "hyp.yaml").write_text(yaml.safe_dump(self.hyp, sort_keys=False))
            if self.resume_ckpt is None:  # a reused folder (--exist-ok): its old rows are not this run's,
                (self.run_dir / "results.csv").unlink(missing_ok=True)
                # nor its last.pt, which a resume would continue under this run's opt.yaml
                (self.weights_dir / "last.pt").unlink(missing_ok=True)
        if self.ctx.distributed and not opts.resume:  # the folder rank 0 made: renumbered if it was taken
            holder = [str(self.run_dir)]
            dist.broadcast_object_list(holder, src=0)
            self.run_dir = Path(holder[0])
            self.weights_dir = self.run_dir / "weights"
        if self.resume_ckpt is not None:
            self._restore(self.resume_ckpt)
            self.resume_ckpt = None
            if self.ctx.is_main:  # a session killed while it saved left a checkpoint-sized temporary file
                freed = sum(remove_partial_writes(self.weights_dir / n) for n in ("last.pt", "best.pt"))
                if freed:
                    self.log(
                        f"removed the partial checkpoint writes of a killed session ({freed / 1e6:.1f} MB)"
                    )

        if self.ctx.distributed:
            self.model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.cuda else None
            )
        if layers:
            count = sum(p.numel() for p in self.model.parameters() if not p.requires_grad)
            self.log(
                f"--freeze {' '.join(map(str, opts.freeze))}: {len(frozen)} tensors ({count:,} parameters) "
                f"of {len(layers)} layers ({_ranges(layers)}) frozen"
            )
        # an official checkpoint's cfg names no architecture: then the checkpoint it was read from
        label = unwrap(self.model).cfg.get("name") or opts.model or f"the architecture of {opts.weights}"
        self.log(
            f"{label}: "
            f"{sum(p.numel() for p in self.model.parameters()):,} parameters; "
            f"{len(self.train_set)} training images, batch {opts.batch} x accumulate "
            f"{accumulation_steps(self.total_batch, nominal_batch(self.hyp))}, {opts.epochs} epochs, "
            f"device {self.device}, "
            f"world size {world}; results in {self.run_dir}"
        )

    # -- set-up helpers -----------------------------------------------------------------------------------

    def log(self, msg: str) -> None:
        """A status line: on the terminal beside the progress bars, or to the log when they are off."""
        if self.ctx.is_main:
            if self.opts.progress:
                tqdm.write(msg)
            else:
                logger.info(msg)

    @staticmethod
    def _load_resume(opts: TrainOptions) -> tuple[TrainOptions, dict[str, Any]]:
        run_dir = Path(opts.resume)
        if run_dir.is_file():  # the reference's form, --resume RUN/weights/last.pt: the run it belongs to
            if run_dir.name != "last.pt" or run_dir.parent.name != "weights":
                raise ValueError(f"--resume {run_dir}: give a run folder or its weights/last.pt")
            run_dir = run_dir.parent.parent
        last = run_dir / "weights" / "last.pt"
        opt_file = run_dir / "opt.yaml"
        if not opt_file.is_file():
            raise FileNotFoundError(f"--resume {run_dir}: no opt.yaml there; is it a training run folder?")
        try:
            saved = yaml.safe_load(opt_file.read_text())
        except yaml.YAMLError as e:
            raise ValueError(f"--resume {run_dir}: {opt_file} is not valid YAML ({e.problem})") from e
        if not isinstance(saved, dict):
            raise ValueError(f"--resume {run_dir}: {opt_file} is not a mapping of training options")
        ckpt = load_checkpoint(last)  # clear error if missing or damaged
        missing = [k for k in RESUME_KEYS if k not in ckpt]
        if missing:  # a bare state dict or an inference checkpoint copied over last.pt
            raise ValueError(
                f"--resume {run_dir}: {last} is not a training checkpoint (no {', '.join(missing)}); "
                "resuming needs the last.pt that the run wrote"
            )
        known = {f.name for f in fields(TrainOptions)}
        resumed = TrainOptions(**{k: v for k, v in saved.items() if k in known})
        if int(ckpt["epoch"]) + 1 >= resumed.epochs:  # refused before anything in the run is written
            raise ValueError(
                f"{run_dir} already finished its {resumed.epochs} epochs; nothing to resume (to train on, "
                f"start a new run from its weights: --weights {last})"
            )
        resumed.resume = str(run_dir)
        for name in RESUME_TAKES_NEW:
            setattr(resumed, name, getattr(opts, name))
        return resumed, ckpt

    def _build_model(self, nc: int) -> nn.Module:
        from yolov7lib.models import create_model

        opts = self.opts
        if self.resume_ckpt is not None:
            model = create_model(self.resume_ckpt["model_cfg"], nc=nc)
        elif opts.weights:  # the reference builds the checkpoint's own architecture unless --cfg is given
            from yolov7lib.engine.weights import read_weights

            arch, state, _ = read_weights(opts.weights, prefer_ema=True)  # ours or official, EMA preferred
            model = create_model(opts.model or _architecture_of(arch, opts.weights), nc=nc)
            if opts.model:  # the named architecture's anchors, not the checkpoint's (the reference's --cfg)
                state = {k: v for k, v in state.items() if "anchor" not in k}
            self._transfer(model, state, opts.weights)
        else:
            model = create_model(opts.model or DEFAULT_MODEL, nc=nc)
        model.names = self.names
        model.hyp = self.hyp
        return model

    def _transfer(self, model: nn.Module, state: dict[str, torch.Tensor], weights: str) -> None:
        """Initialise from a checkpoint's state dict: each tensor whose name and shape match."""
        own = model.state_dict()
        matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        model.load_state_dict(matched, strict=False)
        self.transferred = set(matched)
        self.log(f"transferred {len(matched)}/{len(own)} tensors from {weights}")

    def _restore(self, ckpt: dict[str, Any]) -> None:
        unwrap(self.model).load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt["scaler"]:  # {}: the run trained without AMP (on the CPU); the scaler starts afresh here
            self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(ckpt["ema"])
        self.start_epoch = int(ckpt["epoch"]) + 1
        self.best_fitness = float(ckpt["best_fitness"])
        set_rng_state(ckpt["rng"])
        self._truncate_results(int(ckpt["epoch"]))
        self.log(f"resuming {self.run_dir} from epoch {self.start_epoch + 1}/{self.opts.epochs}")

    def _truncate_results(self, last_epoch: int) -> None:
        """Drop results.csv rows of epochs after the checkpoint (they are about to be redone)."""
        path = self.run_dir / "results.csv"
        if not (self.ctx.is_main and path.is_file()):
            return
        rows = read_results(path)
        kept = [r for r in rows if int(r["epoch"]) <= last_epoch]
        self._write_results(kept)
        if kept:
            self.seconds_before = float(kept[-1]["time_s"])

    # -- the loop -----------------------------------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        """Train all remaining epochs; return the final metrics (also written to metrics.json)."""
        t0 = time.time() - self.seconds_before  # time_s and train_time_s count from the run's start
        if self.ctx.is_main and self.opts.plots and self.start_epoch == 0:
            self._plot_labels()
        try:
            for epoch in range(self.start_epoch, self.opts.epochs):
                losses, lrs = self.train_one_epoch(epoch)
                if self.ctx.is_main:
                    result = self.validate(epoch)
                    self._record(epoch, losses, lrs, result, time.time() - t0)
                    self.save(epoch, result)
                if self.ctx.distributed:
                    dist.barrier()
            metrics = self._finish(time.time() - t0) if self.ctx.is_main else {}
        except KeyboardInterrupt as interrupt:  # the caller's message can then name the folder to resume
            if isinstance(interrupt, TrainingInterrupted):
                raise
            raise TrainingInterrupted(self.run_dir, (self.weights_dir / "last.pt").is_file()) from None
        finally:
            if self.owns_process_group:
                cleanup_distributed()
        return metrics

    def train_one_epoch(self, epoch: int) -> tuple[torch.Tensor, list[float]]:
        """One pass over the training data; returns the mean [box, obj, cls, total] and the last lrs."""
        model, opts = self.model, self.opts
        model.train()
        self.train_loader.sampler.set_epoch(epoch)
        nb = self.batches_per_epoch
        mean_loss = torch.zeros(4, device=self.device)
        self.optimizer.zero_grad(set_to_none=True)
        scale_rng = random.Random(f"{opts.seed}-{epoch}")  # multi-scale sizes: a function of (seed, epoch)
        bar = tqdm(
            enumerate(self.train_loader), total=nb, disable=not (self.ctx.is_main and opts.progress),
            desc=f"epoch {epoch + 1}/{opts.epochs}", leave=True,
        )  # fmt: skip
        for i, (imgs, targets, paths, _) in bar:
            if i >= nb:
                break
            _fault_injection(epoch, i)
            ni = i + nb * epoch  # integrated batch index since the start of training
            imgs = imgs.to(self.device, self.dtype, non_blocking=True) / 255.0
            targets = targets.to(self.device)
            self.schedule.apply(self.optimizer, ni, epoch)
            accumulate = self.schedule.accumulate(ni)

            if opts.multi_scale:
                size = multi_scale_size(scale_rng, opts.img, self.grid)
                factor = size / max(imgs.shape[2:])
                if factor != 1:
                    new = [math.ceil(x * factor / self.grid) * self.grid for x in imgs.shape[2:]]
                    imgs = nn.functional.interpolate(imgs, size=new, mode="bilinear", align_corners=False)

            with torch.autocast(device_type=self.device.type, enabled=self.cuda):
                preds = model(imgs)
                loss, items = self.loss_fn(preds, targets, imgs)
            if self.ctx.distributed:
                loss = loss * self.ctx.world_size  # DDP averages gradients over processes
            self._check_finite(loss, epoch, i, ni)
            self.scaler.scale(loss).backward()
            if ni % accumulate == 0:
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                if self.ema is not None:
                    self.ema.update(model)

            mean_loss = (mean_loss * i + items.detach()) / (i + 1)
            if self.ctx.is_main and opts.progress:
                mem = torch.cuda.memory_reserved(self.device) / 1e9 if self.cuda else 0.0
                bar.set_postfix_str(
                    f"box {mean_loss[0]:.4f} obj {mean_loss[1]:.4f} cls {mean_loss[2]:.4f} "
                    f"lr {self.optimizer.param_groups[1]['lr']:.5f} mem {mem:.2f}G "
                    f"labels {targets.shape[0]} img {imgs.shape[-1]}"
                )
            if self.ctx.is_main and opts.plots and ni < 3:
                from yolov7lib.data import plot_batch

                plot_batch(imgs, targets, paths, self.names, self.run_dir / f"train_batch{ni}.jpg")
        lrs = [g["lr"] for g in self.optimizer.param_groups]
        return mean_loss.cpu(), lrs

    def _check_finite(self, loss: torch.Tensor, epoch: int, i: int, ni: int) -> None:
        finite = torch.isfinite(loss.detach()).all().float().reshape(1)
        if self.ctx.distributed:  # every process must stop together
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if finite.item() < 1:
            raise TrainingDiverged(
                f"the loss is {loss.detach().flatten().tolist()} at epoch {epoch + 1}, batch {i} "
                f"(iteration {ni}); training stopped, {self.weights_dir / 'last.pt'} is left as it was"
            )

    # -- validation, records, checkpoints -----------------------------------------------------------------

    def validate(self, epoch: int) -> EvalResult | None:
        if self.val_loader is None:
            return None
        final = epoch + 1 == self.opts.epochs
        if self.opts.val_final_only and not final:
            return None
        coco_json = category_ids = None
        if final:  # scored as `yolov7 val` scores it: COCO's category ids, not the class index
            coco_json, category_ids = coco_ground_truth(self.data, "val")
        return evaluate(
            self.ema.ema, self.val_loader, self.names, conf_thres=0.001, iou_thres=0.6,
            coco_json=coco_json, category_ids=category_ids,
            save_json=self.run_dir / "predictions.json" if final else None, progress=self.opts.progress,
        )  # fmt: skip

    def _record(
        self, epoch: int, losses: torch.Tensor, lrs: list[float], result: EvalResult | None, t: float
    ) -> None:
        row = {
            "epoch": epoch,
            **dict(zip(["box_loss", "obj_loss", "cls_loss", "total_loss"], losses.tolist(), strict=True)),
            **{f"lr{j}": lr for j, lr in enumerate(lrs)},
            "precision": result.precision if result else 0.0,
            "recall": result.recall if result else 0.0,
            "map50": result.map50 if result else 0.0,
            "map": result.map if result else 0.0,
            "fitness": result.fitness() if result else 0.0,
            "time_s": round(t, 1),
        }
        path = self.run_dir / "results.csv"
        rows = read_results(path) if path.is_file() else []
        self._write_results([*rows, row])
        if result is None:  # results.csv keeps the reference's zeros for epochs not validated
            self.log(f"epoch {epoch + 1}: not validated ({t / 60:.1f} min)")
        else:
            self.log(
                f"epoch {epoch + 1}: P {row['precision']:.3f} R {row['recall']:.3f} "
                f"mAP@.5 {row['map50']:.3f} mAP@.5:.95 {row['map']:.3f} ({t / 60:.1f} min)"
            )

    def _write_results(self, rows: list[dict[str, Any]]) -> None:
        path = self.run_dir / "results.csv"
        tmp = path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=RESULT_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(path)

    def save(self, epoch: int, result: EvalResult | None) -> None:
        fitness = result.fitness() if result else 0.0
        # the reference's rule: best.pt is written when the fitness equals the best so far, so that of epochs
        # with equal fitness (e.g. all 0 under --noval) the latest is kept, not the first
        is_best = fitness >= self.best_fitness
        self.best_fitness = max(self.best_fitness, fitness)
        bare = unwrap(self.model)
        state = {
            "epoch": epoch,
            "best_fitness": self.best_fitness,
            "model": bare.state_dict(),
            "model_cfg": bare.cfg,
            "nc": len(self.names),
            "names": self.names,
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "opt": asdict(self.opts),
            "hyp": self.hyp,
            "metrics": result.to_dict() if result else {},
            "yolov7lib_version": __version__,
        }
        if is_best:  # before last.pt: a run killed between the two writes redoes this epoch on resume
            save_checkpoint(state, self.weights_dir / "best.pt")
        save_checkpoint(state, self.weights_dir / "last.pt")

    def _finish(self, seconds: float) -> dict[str, Any]:
        rows = read_results(self.run_dir / "results.csv")
        best = max(reversed(rows), key=lambda r: float(r["fitness"]))  # the latest of equals, as best.pt
        last = rows[-1]
        metrics = {
            "epochs": len(rows),
            "best_epoch": int(best["epoch"]),
            "precision": float(last["precision"]),
            "recall": float(last["recall"]),
            "map50": float(last["map50"]),
            "map": float(last["map"]),
            "best_map50": float(best["map50"]),
            "best_map": float(best["map"]),
            "train_time_s": round(seconds, 1),
        }
        ckpt = load_checkpoint(self.weights_dir / "last.pt")
        if ckpt.get("metrics", {}).get("coco"):
            metrics["coco"] = ckpt["metrics"]["coco"]
        (self.run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        if self.opts.plots:
            from yolov7lib.engine.plots import plot_results

            plot_results(self.run_dir / "results.csv", self.run_dir / "results.png")
        self.log(f"done in {seconds / 60:.1f} min: {json.dumps(metrics)}")
        n = self.opts.epochs  # the epochs counted from 1, as in the lines of each epoch above
        self.log(
            f"weights in {self.weights_dir}: best.pt of epoch {metrics['best_epoch'] + 1}/{n} (the highest "
            f"fitness, the latest of equals), last.pt of epoch {int(last['epoch']) + 1}/{n}; per-epoch "
            f"results in {self.run_dir / 'results.csv'}"
        )
        return metrics

    def _plot_labels(self) -> None:
        from yolov7lib.engine.plots import plot_labels

        labels = [lb for lb in self.train_set.labels if len(lb)]
        plot_labels(np.concatenate(labels, 0) if labels else np.zeros((0, 5)), self.names,
                    self.run_dir / "labels.png")  # fmt: skip


def _ignored_on_resume(
    requested: TrainOptions, resumed: TrainOptions, given: Collection[str] | None
) -> list[str]:
    """The options of a --resume call that differ from the run's own and are not taken (`name=value (run:
    value)`); `project` is left out, as the CLI's bare --resume uses it to find the run."""
    if given is None:
        defaults = TrainOptions()
        given = [
            f.name for f in fields(TrainOptions) if getattr(requested, f.name) != getattr(defaults, f.name)
        ]
    skipped = {"resume", "project", *RESUME_TAKES_NEW}
    return [
        f"{name}={getattr(requested, name)!r} (run: {getattr(resumed, name)!r})"
        for name in given
        if name not in skipped and getattr(requested, name) != getattr(resumed, name)
    ]


def _ranges(indices: list[int]) -> str:
    """Sorted layer indices as ranges: [0, 1, 2, 5] -> '0-2, 5'."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def multi_scale_size(rng: random.Random, img: int, grid: int) -> int:
    """A --multi-scale training size: the reference's randrange(0.5 img, 1.5 img + grid) rounded down to
    the grid, but at least one grid cell (the reference's draw can round to 0 px below --img 2 x grid)."""
    size = rng.randrange(int(img * 0.5), int(img * 1.5) + grid) // grid * grid
    return max(size, grid)


def _architecture_of(arch: Any, weights: str) -> dict[str, Any]:
    """The training architecture a checkpoint was saved from (`read_weights`'s first item)."""
    from yolov7lib.engine.weights import checkpoint_architecture

    cfg = checkpoint_architecture(arch, weights)
    if cfg.get("fused"):
        raise ValueError(
            f"{weights}: a fused (deploy) checkpoint; name the training architecture with --model"
        )
    return cfg


def _fault_injection(epoch: int, batch: int) -> None:
    """Kill this process with SIGKILL at `YOLOV7LIB_KILL_AT=epoch:batch` (tests of crash and resume)."""
    target = os.environ.get("YOLOV7LIB_KILL_AT")
    if target and target == f"{epoch}:{batch}":
        os.kill(os.getpid(), signal.SIGKILL)


def train(**options: Any) -> dict[str, Any]:
    """Train with the options of `yolov7 train` given as keyword arguments; return the final metrics.

    The global random generators are seeded from `seed`; `deterministic=True` switches PyTorch's
    deterministic algorithms (and cuDNN's) on for the run and back to the caller's settings after it.
    """
    unknown = set(options) - {f.name for f in fields(TrainOptions)}
    if unknown:
        raise TypeError(f"unknown training option(s): {', '.join(sorted(unknown))}")
    with _determinism_restored():  # `deterministic=True` holds for the run only, not for the caller after it
        return Trainer(TrainOptions(**options), given=options).fit()


@contextlib.contextmanager
def _determinism_restored() -> Iterator[None]:
    """Put PyTorch's process-wide determinism switches (set by `deterministic=True`) back as they were."""
    algorithms = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(algorithms, warn_only=warn_only)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
