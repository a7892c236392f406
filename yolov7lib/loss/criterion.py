"""The YOLOv7 training loss: CIoU box loss, objectness with IoU soft labels, BCE classification.

Per level of each head: box = mean(1 - CIoU) over the positives; objectness = BCE of every cell
against 0, or against the positive's soft label (1 - gr) + gr * IoU; classification = BCE of the
positives' class logits against the (optionally smoothed) one-hot class, only when nc > 1. The level
objectness losses are weighted by the per-level balance (4.0, 1.0, 0.4 for three levels; 4.0, 1.0,
0.25, 0.06, 0.02 otherwise, the reference's rule); auxiliary-head terms are weighted by `aux_weight`
(0.25). The totals are multiplied by the gains of the hyperparameters, scaled as below, and the loss
returned is their sum times the batch size with the detached items [box, obj, cls, total].

Gain scaling lives here and nowhere else: `build_loss` takes the hyperparameters as written in the hyp
files and scales them with `scaled_gains` (box x 3/nl, cls x nc/80 x 3/nl, obj x (img_size/640)^2 x
3/nl, as the reference's train.py does to its hyp dict). Trainers pass the unscaled hyp.

How the objectness term is computed: the target is 0 at every cell but the positives', so the level's
BCE sum is split into the BCE of every cell against 0, one pass over the objectness logits, plus at
each positive cell BCE(x, soft label) - BCE(x, 0) (= -soft label * x without pos_weight and focal
loss). The per-cell target maps are built only on demand (`HeadTerms.tobj`).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from yolov7lib.configs import load_hyp
from yolov7lib.loss.assigners import AssignerConfig, Assignment, LabelAssigner
from yolov7lib.loss.candidates import CELL, GI, GJ, LEVEL, LEVEL_ANCHOR, LevelTables, gather_rows
from yolov7lib.loss.decoder import decode_wh, decode_xy
from yolov7lib.ops.boxes import bbox_iou

P5_BALANCE = (4.0, 1.0, 0.4)
P6_BALANCE = (4.0, 1.0, 0.25, 0.06, 0.02)
FOCAL_ALPHA = 0.25


def level_balance(nl: int) -> tuple[float, ...]:
    """Objectness weight of each level: P5_BALANCE for 3 levels, else the first nl of P6_BALANCE."""
    if nl == len(P5_BALANCE):
        return P5_BALANCE
    if 1 <= nl <= len(P6_BALANCE):
        return P6_BALANCE[:nl]
    raise ValueError(f"no objectness balance for {nl} levels (1 to {len(P6_BALANCE)} supported)")


def scaled_gains(hyp: Mapping[str, Any], nl: int, nc: int, img_size: int) -> dict[str, float]:
    """The box, obj and cls gains of `hyp` scaled to nl levels, nc classes and img_size pixels."""
    return {
        "box": hyp["box"] * (3.0 / nl),
        "cls": hyp["cls"] * (nc / 80.0 * 3.0 / nl),
        "obj": hyp["obj"] * ((img_size / 640) ** 2 * 3.0 / nl),
    }


@dataclass(frozen=True)
class HeadTerms:
    """Unweighted loss terms of one head, one entry per level: (nl,) tensors; `tobj` gives the
    objectness target maps (B, na, H, W) of the levels, built on demand."""

    box: torch.Tensor
    obj: torch.Tensor
    cls: torch.Tensor
    n_pos: torch.Tensor
    soft: torch.Tensor  # (N,) soft labels of the positives' cells
    cells: torch.Tensor  # (N,) those cells in the flattened maps of all levels, or the map size
    shapes: tuple[torch.Size, ...]  # (B, na, H, W) of each level

    @property
    def tobj(self) -> list[torch.Tensor]:
        """Objectness target of every cell: the soft label at the positives, 0 elsewhere."""
        sizes = [s.numel() for s in self.shapes]
        total = sum(sizes)
        flat = self.soft.new_zeros(total + 1).scatter_(0, self.cells, self.soft)[:total]
        return [f.view(s) for f, s in zip(flat.split(sizes), self.shapes, strict=True)]

    def total(self) -> torch.Tensor:
        """Unweighted sum of all terms (for tests and gradient checks)."""
        return self.box.sum() + self.obj.sum() + self.cls.sum()


def last_writes(keys: torch.Tensor) -> torch.Tensor:
    """(N,) bool: whether each entry is the last one with its key, in list order.

    Where several positives share a cell the reference writes their objectness labels in list order,
    so the last one stays; this finds those with a stable sort instead of the writes.
    """
    sorted_keys, order = torch.sort(keys, stable=True)
    last = torch.ones_like(keys, dtype=torch.bool)
    last[order[:-1]] = sorted_keys[1:] != sorted_keys[:-1]
    return last


class YOLOv7Loss:
    """Callable loss(preds, targets, imgs) -> (loss, items); build it with `build_loss`.

    `preds` is the training-mode output: nl maps (B, na, H, W, no), then nl auxiliary maps of the same
    shapes if the head has an auxiliary head. `targets` (n, 6) [image, class, x, y, w, h] normalised;
    `imgs` the input batch (only its height and width are used, for SimOTA's pixel IoUs).

    Where the work runs: with `compact_on_host` (default) and maps on the CPU, the candidates that are
    not positives are dropped before the loss terms (reading their counts back is free there); on an
    accelerator they stay in place, masked, so the only read-back of a training step is the candidate
    counts of each assignment (see `candidates.find_candidates`). Both forms give the same loss.
    """

    def __init__(self, head: Any, hyp: Mapping[str, Any], img_size: int = 640) -> None:
        self.head = head
        self.nl, self.na, self.nc = int(head.nl), int(head.na), int(head.nc)
        self.no = self.nc + 5
        self.strides = [float(s) for s in head.stride]
        hyp = load_hyp(dict(hyp))  # packaged defaults fill the keys `hyp` lacks
        self.hyp = hyp
        self.gains = scaled_gains(hyp, self.nl, self.nc, img_size)
        self.balance = level_balance(self.nl)
        eps = float(hyp["label_smoothing"])
        self.cls_pos, self.cls_neg = 1.0 - 0.5 * eps, 0.5 * eps
        self.cls_pw, self.obj_pw = float(hyp["cls_pw"]), float(hyp["obj_pw"])
        self.fl_gamma = float(hyp["fl_gamma"])
        self.gr = float(hyp["gr"])
        self.aux_weight = float(hyp["aux_weight"])
        # On the host, drop non-positive candidates before the loss terms (same result, less work); on
        # an accelerator keep them masked, which avoids reading the positive counts back.
        self.compact_on_host = True
        self.replicas = 1  # processes sharing the global batch (see `distribute`)
        self._configs: dict[bool, AssignerConfig] = {}  # assignment settings, with and without aux maps

    def distribute(self, world_size: int) -> None:
        """Normalise the box and class means by the positives of the whole global batch.

        Under DistributedDataParallel each process sees `1 / world_size` of the batch. The objectness
        mean is over equal-sized shares and averages exactly; the box and class means are over positives,
        whose count differs between shares, so each process divides its sums by the global count (one
        all-reduce of `nl` numbers per head and step) over `world_size`. With the trainer's loss x
        world_size and DDP's gradient average, a distributed step then computes the gradient of one
        process holding the global batch (with cross-replica BatchNorm), which the tests check.
        """
        self.replicas = int(world_size)

    # -- inputs ---------------------------------------------------------------------------------
    def _split(self, preds: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        if not isinstance(preds, list | tuple) or not all(isinstance(p, torch.Tensor) for p in preds):
            raise TypeError(
                "loss expects the training-mode output, a list of (B, na, H, W, no) maps; "
                f"got {type(preds).__name__} (is the model in eval mode?)"
            )
        if len(preds) not in (self.nl, 2 * self.nl):
            raise ValueError(
                f"expected {self.nl} lead maps or {self.nl} lead + {self.nl} auxiliary maps, got {len(preds)}"
            )
        lead, aux = list(preds[: self.nl]), list(preds[self.nl :]) or None
        for i, p in enumerate(lead):
            if p.dim() != 5 or p.shape[1] != self.na or p.shape[4] != self.no:
                raise ValueError(
                    f"lead map {i} has shape {tuple(p.shape)}; expected (B, {self.na}, H, W, {self.no})"
                )
        for i, p in enumerate(aux or []):
            if p.shape != lead[i].shape:
                raise ValueError(
                    f"auxiliary map {i} has shape {tuple(p.shape)} but lead map {i} has "
                    f"{tuple(lead[i].shape)}; auxiliary maps must lie on the lead grids"
                )
        return lead, aux

    def _check_targets(self, targets: torch.Tensor, batch: int) -> None:
        if targets.dim() != 2 or targets.shape[1] != 6:
            raise ValueError(f"targets must be (n, 6) [image, class, x, y, w, h]; got {tuple(targets.shape)}")
        if targets.device.type == "cpu" and targets.shape[0]:  # free to check on the host
            ids = targets[:, :2]  # image, class
            low, high = torch.aminmax(ids, dim=0)
            (image_lo, cls_lo), (image_hi, cls_hi), (image_frac, cls_frac) = torch.stack(
                (low, high, (ids != ids.round()).any(0).to(ids.dtype))
            ).tolist()
            if image_lo < 0 or image_hi >= batch or image_frac:
                raise ValueError(f"target image indices must be integers in [0, {batch})")
            if cls_lo < 0 or cls_hi >= self.nc or cls_frac:
                raise ValueError(f"target classes must be integers in [0, {self.nc})")

    # -- assignment and terms -------------------------------------------------------------------
    def assigner(self, has_aux: bool) -> LabelAssigner:
        """The label assigner for this head, with or without auxiliary maps."""
        config = self._configs.get(has_aux)
        if config is None:
            config = self._configs[has_aux] = AssignerConfig.from_hyp(self.hyp, has_aux)
        return LabelAssigner(self.strides, self.head.anchors, config)

    def assign(
        self, preds: Sequence[torch.Tensor], targets: torch.Tensor, imgs: torch.Tensor | None = None
    ) -> tuple[Assignment, Assignment | None]:
        """Labels of the lead head and (None without auxiliary maps) of the auxiliary head."""
        lead, aux = self._split(preds)
        self._check_targets(targets, lead[0].shape[0])
        targets = targets.to(lead[0].device)
        return self.assigner(aux is not None)(lead, targets, self._img_hw(lead, imgs), aux)

    def _img_hw(self, lead: list[torch.Tensor], imgs: torch.Tensor | None) -> tuple[int, int]:
        if imgs is not None:
            return int(imgs.shape[-2]), int(imgs.shape[-1])
        h, w = lead[0].shape[2:4]
        return int(h * self.strides[0]), int(w * self.strides[0])

    def _bce(self, logits: torch.Tensor, target: torch.Tensor, pos_weight: float) -> torch.Tensor:
        pw = logits.new_tensor([pos_weight]) if pos_weight != 1.0 else None  # 1: same loss, cheaper path
        loss = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw, reduction="none")
        if self.fl_gamma > 0:  # focal loss (reference FocalLoss, alpha 0.25)
            prob = logits.sigmoid()
            p_t = target * prob + (1 - target) * (1 - prob)
            alpha = target * FOCAL_ALPHA + (1 - target) * (1 - FOCAL_ALPHA)
            loss = loss * alpha * (1.0 - p_t) ** self.fl_gamma
        return loss

    def _plain_obj_bce(self) -> bool:
        """Whether the objectness BCE is the plain one (no focal loss; pos_weight has no effect at 0)."""
        return self.fl_gamma == 0

    def _obj_against_zero(self, logits: torch.Tensor) -> torch.Tensor:
        """Objectness loss of every cell against target 0: BCE(x, 0) = softplus(x) when plain."""
        if self._plain_obj_bce():
            return F.softplus(logits)
        return self._bce(logits, torch.zeros_like(logits), self.obj_pw)

    def _obj_positive_change(self, logits: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
        """BCE(x, soft) - BCE(x, 0) at positive cells: what their soft labels add to the loss."""
        if self._plain_obj_bce() and self.obj_pw == 1.0:
            return -soft * logits
        return self._bce(logits, soft, self.obj_pw) - self._bce(logits, torch.zeros_like(soft), self.obj_pw)

    def head_terms(
        self,
        maps: list[torch.Tensor],
        labels: Assignment,
        targets: torch.Tensor,
        constrained: bool = True,
    ) -> HeadTerms:
        """Loss terms of one head's maps given its labels; `constrained` picks the offset decoder.

        All levels are handled together: the positives as one list, the objectness logits as one
        flattened vector.
        """
        compact = self.compact_on_host and maps[0].device.type == "cpu"
        if compact:
            labels = labels.compacted()  # reading counts back is free here: compute on positives only
        cand = labels.candidates
        fields = cand.fields
        work = torch.promote_types(maps[0].dtype, torch.float32)
        grids = [tuple(m.shape[2:4]) for m in maps]
        tables = LevelTables.get(grids, self.head.anchors, self.strides, maps[0].device, work)
        rows = gather_rows(cand, maps).to(work)
        pos, tgt = labels.positive, targets[labels.matched]
        info = tables.decode[fields[:, LEVEL_ANCHOR]]  # (N, 5): grid W, H, anchor w, h, stride
        size = info[:, :2]

        tbox = torch.cat((tgt[:, 2:4] * size - fields[:, GI : GJ + 1], tgt[:, 4:6] * size), 1).to(work)
        if not compact:
            tbox = torch.where(pos[:, None], tbox, tables.constant((0.5, 0.5, 1.0, 1.0)))  # inert filler
        pbox = torch.cat((decode_xy(rows[:, :2], constrained), decode_wh(rows[:, 2:4], info[:, 2:4])), 1)
        iou = bbox_iou(pbox, tbox, xywh=True, kind="ciou")

        if self.nc > 1:
            tcls = torch.full_like(rows[:, 5:], self.cls_neg)
            tcls.scatter_(1, tgt[:, 1].long()[:, None], self.cls_pos)
            bce = self._bce(rows[:, 5:], tcls, self.cls_pw).sum(1)
        else:
            bce = torch.zeros_like(iou)

        # Objectness at the positives: the last positive written to a cell sets its soft label.
        shapes = tuple(m.shape[:4] for m in maps)
        starts = tuple(itertools.accumulate((s.numel() for s in shapes[:-1]), initial=0))
        level_start = tables.constant(starts, torch.long)
        total = sum(s.numel() for s in shapes)
        cells = level_start[fields[:, LEVEL]] + fields[:, CELL]
        if not compact:
            cells = torch.where(pos, cells, total)
        winner = last_writes(cells) & pos
        soft = (1.0 - self.gr) + self.gr * iou.detach().clamp(0)
        change = self._obj_positive_change(rows[:, 4], soft)

        # Per-level sums over the level blocks (deterministic, unlike scattered additions on a GPU).
        if compact:  # every row is a positive
            per_row = torch.stack((torch.ones_like(iou), 1.0 - iou, bce, torch.where(winner, change, 0.0)), 1)
        else:
            zero = iou.new_zeros(())
            per_row = torch.stack(
                (
                    pos.to(work),
                    torch.where(pos, 1.0 - iou, zero),
                    torch.where(pos, bce, zero),
                    torch.where(winner, change, zero),
                ),
                1,
            )
        sizes = [s.stop - s.start for s in cand.blocks]
        n_pos, box_sum, cls_sum, obj_change = torch.stack([b.sum(0) for b in per_row.split(sizes)]).unbind(1)
        if self.replicas > 1:
            import torch.distributed as dist

            total_pos = n_pos.detach().clone()
            dist.all_reduce(total_pos)
            denom = total_pos.clamp(min=1) / self.replicas
        else:
            denom = n_pos.clamp(min=1)
        box = box_sum / denom
        cls = cls_sum / (denom * self.nc)

        # Objectness of every cell against 0, level by level, plus what the positives change.
        cells_per_level = [s.numel() for s in shapes]
        logits = torch.cat([m[..., 4].reshape(-1) for m in maps]).to(work)
        dense = torch.stack([d.sum() for d in self._obj_against_zero(logits).split(cells_per_level)])
        obj = (dense + obj_change) / tables.constant(tuple(cells_per_level))
        return HeadTerms(
            box=box,
            obj=obj,
            cls=cls,
            n_pos=n_pos,
            soft=soft.detach(),
            cells=torch.where(winner, cells, total),
            shapes=shapes,
        )

    # -- the loss -------------------------------------------------------------------------------
    def __call__(
        self, preds: Sequence[torch.Tensor], targets: torch.Tensor, imgs: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lead, aux = self._split(preds)
        self._check_targets(targets, lead[0].shape[0])
        targets = targets.to(lead[0].device)
        assigner = self.assigner(aux is not None)
        lead_labels, aux_labels = assigner(lead, targets, self._img_hw(lead, imgs), aux)

        work = torch.promote_types(lead[0].dtype, torch.float32)
        grids = [tuple(m.shape[2:4]) for m in lead]
        tables = LevelTables.get(grids, self.head.anchors, self.strides, lead[0].device, work)
        heads = [(1.0, self.head_terms(lead, lead_labels, targets))]
        if aux is not None and aux_labels is not None:
            heads.append(
                (self.aux_weight, self.head_terms(aux, aux_labels, targets, assigner.config.aux_constrained))
            )
        balance = tables.constant(self.balance)
        parts = None
        for weight, t in heads:  # (3,) box, obj, cls of each head, weighted
            part = torch.stack((t.box.sum(), (t.obj * balance).sum(), t.cls.sum()))
            parts = part if parts is None else parts + weight * part
        items = parts * tables.constant((self.gains["box"], self.gains["obj"], self.gains["cls"]))
        loss = items.sum()
        return loss.reshape(1) * lead[0].shape[0], torch.cat((items, loss[None])).detach()


def _detection_head(model: Any) -> Any:
    head = getattr(model, "head", None)
    if head is None and hasattr(model, "model"):
        head = model.model[-1]
    if head is None and all(hasattr(model, k) for k in ("nl", "na", "nc", "anchors", "stride")):
        head = model
    if head is None or not all(hasattr(head, k) for k in ("nl", "na", "nc", "anchors", "stride")):
        raise TypeError("build_loss needs a model with a detection head (nl, na, nc, anchors, stride)")
    return head


def build_loss(model: Any, hyp: Mapping[str, Any] | str | Path = "p5", img_size: int = 640) -> YOLOv7Loss:
    """The YOLOv7 loss for `model`'s detection head.

    `hyp` is a hyperparameter profile name, a YAML path or a dict, unscaled (as in the hyp files);
    packaged defaults fill missing keys. `img_size` is the nominal training size (scales the objectness
    gain). `loss_ota` picks SimOTA (1) or the plain assignment (0); auxiliary maps in the predictions
    switch on the auxiliary-head assigner chosen by `aux_assign`.
    """
    hyp = dict(hyp) if isinstance(hyp, Mapping) else load_hyp(hyp)
    return YOLOv7Loss(_detection_head(model), hyp, img_size)
