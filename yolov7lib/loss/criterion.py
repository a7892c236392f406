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
from yolov7lib.loss.candidates import gather_rows
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
    """Unweighted loss terms of one head, one entry per level: (nl,) tensors, and the objectness
    target maps (B, na, H, W) of the levels."""

    box: torch.Tensor
    obj: torch.Tensor
    cls: torch.Tensor
    n_pos: torch.Tensor
    tobj: list[torch.Tensor]

    def total(self) -> torch.Tensor:
        """Unweighted sum of all terms (for tests and gradient checks)."""
        return self.box.sum() + self.obj.sum() + self.cls.sum()


def _objectness_target(
    soft: torch.Tensor, keep: torch.Tensor, cells: torch.Tensor, size: int
) -> torch.Tensor:
    """Flat (size,) map holding `soft` at the `cells` where `keep`; where a cell is written several
    times the last entry wins (the reference writes its positives in this order)."""
    order = torch.arange(cells.shape[0], device=cells.device)
    idx = torch.where(keep, cells, size)
    last = torch.full((size + 1,), -1, dtype=torch.long, device=cells.device)
    last.scatter_reduce_(0, idx, order, reduce="amax")
    winner = keep & (last[cells] == order)
    out = soft.new_zeros(size + 1).scatter_(0, torch.where(winner, cells, size), soft)
    return out[:size]


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
            image, cls = targets[:, 0], targets[:, 1]
            if image.min() < 0 or image.max() >= batch or (image != image.round()).any():
                raise ValueError(f"target image indices must be integers in [0, {batch})")
            if cls.min() < 0 or cls.max() >= self.nc or (cls != cls.round()).any():
                raise ValueError(f"target classes must be integers in [0, {self.nc})")

    # -- assignment and terms -------------------------------------------------------------------
    def assigner(self, has_aux: bool) -> LabelAssigner:
        """The label assigner for this head, with or without auxiliary maps."""
        config = AssignerConfig.from_hyp(self.hyp, has_aux)
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

    def head_terms(
        self,
        maps: list[torch.Tensor],
        labels: Assignment,
        targets: torch.Tensor,
        constrained: bool = True,
    ) -> HeadTerms:
        """Loss terms of one head's maps given its labels; `constrained` picks the offset decoder.

        All levels are handled together: the positives as one list, the objectness maps as one
        flattened vector.
        """
        if self.compact_on_host and maps[0].device.type == "cpu":
            labels = labels.compacted()  # reading counts back is free here: compute on positives only
        cand = labels.candidates
        work = torch.promote_types(maps[0].dtype, torch.float32)
        rows = gather_rows(cand, maps).to(work)
        pos, tgt, level = labels.positive, targets[labels.matched], cand.level
        size = rows.new_tensor([[m.shape[3], m.shape[2]] for m in maps])[level]  # (N, 2) as (W, H)
        anchors = self.head.anchors.to(device=rows.device)
        anchor_wh = anchors.reshape(-1, 2)[level * self.na + cand.anchor]

        grid = torch.stack((cand.gi, cand.gj), 1)
        tbox = torch.cat((tgt[:, 2:4] * size - grid, tgt[:, 4:6] * size), 1).to(work)
        tbox = torch.where(pos[:, None], tbox, tbox.new_tensor([0.5, 0.5, 1.0, 1.0]))  # inert filler
        pbox = torch.cat((decode_xy(rows[:, :2], constrained), decode_wh(rows[:, 2:4], anchor_wh)), 1)
        iou = bbox_iou(pbox, tbox, xywh=True, kind="ciou")

        if self.nc > 1:
            tcls = torch.full_like(rows[:, 5:], self.cls_neg)
            tcls.scatter_(1, tgt[:, 1].long()[:, None], self.cls_pos)
            bce = self._bce(rows[:, 5:], tcls, self.cls_pw).sum(1)
        else:
            bce = torch.zeros_like(iou)
        # Per-level sums over the level blocks (deterministic, unlike scattered additions on a GPU).
        per_row = torch.stack((pos.to(work), torch.where(pos, 1.0 - iou, 0.0), torch.where(pos, bce, 0.0)), 1)
        sizes = [s.stop - s.start for s in cand.blocks]
        n_pos, box_sum, cls_sum = torch.stack([b.sum(0) for b in per_row.split(sizes)]).unbind(1)
        if self.replicas > 1:
            import torch.distributed as dist

            total_pos = n_pos.detach().clone()
            dist.all_reduce(total_pos)
            denom = total_pos.clamp(min=1) / self.replicas
        else:
            denom = n_pos.clamp(min=1)
        box = box_sum / denom
        cls = cls_sum / (denom * self.nc)

        # Objectness of every cell of every level: soft labels at the positives, 0 elsewhere.
        cells_per_level = [m[..., 4].numel() for m in maps]
        start = torch.tensor([0, *cells_per_level[:-1]], device=rows.device).cumsum(0)
        total = sum(cells_per_level)
        soft = (1.0 - self.gr) + self.gr * iou.detach().clamp(0)
        tobj = _objectness_target(soft, pos, start[level] + cand.cell, total)
        logits = torch.cat([m[..., 4].reshape(-1) for m in maps]).to(work)
        bce_obj = self._bce(logits, tobj, self.obj_pw)
        bounds = [0, *itertools.accumulate(cells_per_level)]
        obj = torch.stack([bce_obj[a:b].mean() for a, b in itertools.pairwise(bounds)])
        tobj_maps = [
            tobj[a:b].view(m.shape[:4]) for m, (a, b) in zip(maps, itertools.pairwise(bounds), strict=True)
        ]
        return HeadTerms(box=box, obj=obj, cls=cls, n_pos=n_pos, tobj=tobj_maps)

    # -- the loss -------------------------------------------------------------------------------
    def __call__(
        self, preds: Sequence[torch.Tensor], targets: torch.Tensor, imgs: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lead, aux = self._split(preds)
        self._check_targets(targets, lead[0].shape[0])
        targets = targets.to(lead[0].device)
        assigner = self.assigner(aux is not None)
        lead_labels, aux_labels = assigner(lead, targets, self._img_hw(lead, imgs), aux)

        balance = lead[0].new_tensor(self.balance, dtype=torch.promote_types(lead[0].dtype, torch.float32))
        terms = self.head_terms(lead, lead_labels, targets)
        lbox, lobj, lcls = terms.box.sum(), (terms.obj * balance).sum(), terms.cls.sum()
        if aux is not None and aux_labels is not None:
            t = self.head_terms(aux, aux_labels, targets, assigner.config.aux_constrained)
            w = self.aux_weight
            lbox, lobj, lcls = (
                lbox + w * t.box.sum(),
                lobj + w * (t.obj * balance).sum(),
                lcls + w * t.cls.sum(),
            )
        lbox = lbox * self.gains["box"]
        lobj = lobj * self.gains["obj"]
        lcls = lcls * self.gains["cls"]
        loss = lbox + lobj + lcls
        return loss.reshape(1) * lead[0].shape[0], torch.stack((lbox, lobj, lcls, loss)).detach()


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
