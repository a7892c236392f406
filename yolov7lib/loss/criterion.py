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
loss). The per-cell target maps are built only on demand (`HeadTerms.tobj`). The lead and the
auxiliary head are handled in one pass: their positives form one list and their objectness logits one
vector, so the CIoU, the BCEs and the per-level sums run once for both (`heads_terms`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from yolov7lib.configs import check_hyp_keys, load_hyp
from yolov7lib.loss.assigners import AssignerConfig, Assignment, LabelAssigner
from yolov7lib.loss.candidates import GI, GJ, Candidates
from yolov7lib.loss.decoder import decode_box
from yolov7lib.loss.maps import read_maps
from yolov7lib.loss.tables import LevelTables
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
    soft: torch.Tensor  # (N,) soft labels of the positives
    keys: torch.Tensor  # (N,) their cells in the flattened maps of all levels, offset by `key_start`
    winner: torch.Tensor  # (N,) whether each is the positive whose label its cell keeps
    key_start: int
    shapes: tuple[torch.Size, ...]  # (B, na, H, W) of each level

    @property
    def tobj(self) -> list[torch.Tensor]:
        """Objectness target of every cell: the soft label at the positives, 0 elsewhere."""
        sizes = [s.numel() for s in self.shapes]
        total = sum(sizes)
        cells = torch.where(self.winner, self.keys - self.key_start, total)
        flat = self.soft.new_zeros(total + 1).scatter_(0, cells, self.soft)[:total]
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
        check_hyp_keys(hyp, "build_loss hyp")  # a misspelt key would leave its value at the default
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
        self._constants: dict[tuple, torch.Tensor] = {}  # small per-(device, dtype) weight tensors

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
        batch = lead[0].shape[0] if lead[0].dim() else 0
        for i, p in enumerate(lead):
            if p.dim() != 5 or p.shape[0] != batch or p.shape[1] != self.na or p.shape[4] != self.no:
                raise ValueError(
                    f"lead map {i} has shape {tuple(p.shape)}; expected ({batch}, {self.na}, H, W, {self.no})"
                )
        self._check_grids(lead)
        for i, p in enumerate(aux or []):
            if p.shape != lead[i].shape:
                raise ValueError(
                    f"auxiliary map {i} has shape {tuple(p.shape)} but lead map {i} has "
                    f"{tuple(lead[i].shape)}; auxiliary maps must lie on the lead grids"
                )
        return lead, aux

    def _check_grids(self, lead: list[torch.Tensor]) -> None:
        """Each level's grid must be the previous one's divided by the stride ratio (rounded either way):
        maps of another head or in another order (deepest first) would otherwise meet the wrong anchors."""
        for i in range(1, self.nl):
            ratio = self.strides[i] / self.strides[i - 1]
            prev, grid = tuple(lead[i - 1].shape[2:4]), tuple(lead[i].shape[2:4])
            if not all(_rounds_to(g / ratio, n) for g, n in zip(prev, grid, strict=True)):
                strides = ", ".join(f"{s:g}" for s in self.strides)
                raise ValueError(
                    f"lead map {i} is a {grid[0]}x{grid[1]} grid after lead map {i - 1}'s "
                    f"{prev[0]}x{prev[1]}, not at the head's strides ({strides}); pass the maps in the "
                    "head's order (shallowest first), all from one batch"
                )

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
            _check_target_boxes(targets[:, 2:6])

    # -- assignment and terms -------------------------------------------------------------------
    def assigner_config(self, has_aux: bool) -> AssignerConfig:
        """The assignment settings for this head, with or without auxiliary maps (read once)."""
        config = self._configs.get(has_aux)
        if config is None:
            config = self._configs[has_aux] = AssignerConfig.from_hyp(self.hyp, has_aux)
        return config

    def assigner(self, has_aux: bool) -> LabelAssigner:
        """The label assigner for this head, with or without auxiliary maps."""
        return LabelAssigner(self.strides, self.head.anchors, self.assigner_config(has_aux))

    def assign(
        self, preds: Sequence[torch.Tensor], targets: torch.Tensor, imgs: torch.Tensor | None = None
    ) -> tuple[Assignment, Assignment | None]:
        """Labels of the lead head and (None without auxiliary maps) of the auxiliary head."""
        lead, aux = self._split(preds)
        self._check_targets(targets, lead[0].shape[0])
        targets = targets.to(lead[0].device)
        return self.assigner(aux is not None)(lead, targets, self._img_hw(lead, imgs), aux)

    def labelled_heads(
        self, preds: Sequence[torch.Tensor], targets: torch.Tensor, imgs: torch.Tensor | None = None
    ) -> tuple[list[tuple[list[torch.Tensor], Assignment, bool]], tuple[float, ...]]:
        """The heads with their labels, as `heads_terms` takes them, and their weights in the total.

        Returns ([(maps, labels, constrained decoder)], weights): the lead head (weight 1) and, when the
        assigner labels auxiliary maps, the auxiliary head (weight `aux_weight`, Section 4.2).
        """
        lead_labels, aux_labels = self.assign(preds, targets, imgs)
        heads, weights = [(list(preds[: self.nl]), lead_labels, True)], (1.0,)
        if aux_labels is not None:
            heads.append((list(preds[self.nl :]), aux_labels, self.assigner_config(True).aux_constrained))
            weights = (1.0, self.aux_weight)
        return heads, weights

    def _img_hw(self, lead: list[torch.Tensor], imgs: torch.Tensor | None) -> tuple[int, int]:
        if imgs is not None:
            hw, grid, stride = (int(imgs.shape[-2]), int(imgs.shape[-1])), lead[0].shape[2:4], self.strides[0]
            if not all(_rounds_to(n / stride, g) for n, g in zip(hw, grid, strict=True)):
                raise ValueError(
                    f"imgs are {hw[0]}x{hw[1]} pixels but lead map 0 is a {grid[0]}x{grid[1]} grid at stride "
                    f"{stride:g}; pass the batch the maps were predicted from (SimOTA measures its IoUs in "
                    "its pixels)"
                )
            return hw
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
        """Loss terms of one head's maps given its labels; `constrained` picks the offset decoder."""
        return self.heads_terms([(maps, labels, constrained)], targets)[0]

    def heads_terms(
        self, heads: Sequence[tuple[list[torch.Tensor], Assignment, bool]], targets: torch.Tensor
    ) -> list[HeadTerms]:
        """Loss terms of several heads, each given as (maps, labels, constrained decoder), in one pass.

        All levels of all heads are handled together: the positives as one list (head by head, level
        by level), the objectness logits as one flattened vector. The heads' maps must share their
        shapes (the auxiliary head lies on the lead grids).
        """
        return self._joint_terms(heads, targets)[0]

    def _joint_terms(
        self, heads: Sequence[tuple[list[torch.Tensor], Assignment, bool]], targets: torch.Tensor
    ) -> tuple[list[HeadTerms], torch.Tensor]:
        """`heads_terms`, and the (3, heads * nl) box, obj and cls terms of all levels of all heads."""
        maps0 = heads[0][0]
        nl, n_heads = len(maps0), len(heads)
        compact = self.compact_on_host and maps0[0].device.type == "cpu"
        work = torch.promote_types(maps0[0].dtype, torch.float32)
        grids = [tuple(m.shape[2:4]) for m in maps0]
        tables = LevelTables.get(grids, self.head.anchors, self.strides, maps0[0].device, work)
        labels = Assignment.concat([labels for _, labels, _ in heads])
        if compact:
            labels = labels.compacted()  # reading counts back is free here: compute on positives only
        cand, pos = labels.candidates, labels.positive
        level_maps = [m for maps, _, _ in heads for m in maps]  # level block b reads map b
        logits, rows = read_maps(level_maps, [cand.cell[s] for s in cand.blocks])
        logits, rows = logits.to(work), rows.to(work)
        sizes = [s.stop - s.start for s in cand.blocks]
        head_sizes = [sum(sizes[h * nl : (h + 1) * nl]) for h in range(n_heads)]
        tgt = targets[labels.matched]

        iou = self._box_iou(
            cand, rows, tgt, [c for _, _, c in heads], head_sizes, tables, None if compact else pos
        )
        if self.nc > 1:
            tcls = torch.full_like(rows[:, 5:], self.cls_neg).scatter_(1, tgt[:, 1:2].long(), self.cls_pos)
            bce = self._bce(rows[:, 5:], tcls, self.cls_pw).sum(1)
        else:
            bce = torch.zeros_like(iou)

        # Objectness at the positives: the last positive written to a cell sets its soft label.
        shapes = tuple(m.shape[:4] for m in maps0)
        cells_per_level = [s.numel() for s in shapes] * n_heads
        starts = tuple(itertools.accumulate(cells_per_level[:-1], initial=0))
        keys = tables.constant(starts, torch.long)[_block_of_rows(cand, head_sizes, nl)] + cand.cell
        if not compact:
            keys = torch.where(pos, keys, sum(cells_per_level))
        winner = last_writes(keys) & pos
        soft = (1.0 - self.gr) + self.gr * iou.detach().clamp(0)
        change = torch.where(winner, self._obj_positive_change(rows[:, 4], soft), 0.0)

        # Per-level sums over the level blocks (deterministic, unlike scattered additions on a GPU).
        if compact:  # every row is a positive
            per_row = torch.stack((torch.ones_like(iou), 1.0 - iou, bce, change), 1)
        else:
            per_row = torch.stack(
                (pos.to(work), torch.where(pos, 1.0 - iou, 0.0), torch.where(pos, bce, 0.0), change), 1
            )
        n_pos, box_sum, cls_sum, obj_change = torch.stack([b.sum(0) for b in per_row.split(sizes)]).unbind(1)
        denom = self._positives_denominator(n_pos)

        # Objectness of every cell against 0, level by level, plus what the positives change.
        dense = torch.stack([d.sum() for d in self._obj_against_zero(logits).split(cells_per_level)])
        obj = (dense + obj_change) / tables.constant(tuple(cells_per_level))
        joint = torch.stack((box_sum / denom, obj, cls_sum / (denom * self.nc)))

        out, start, soft = [], 0, soft.detach()
        for h in range(n_heads):
            lv, rw = slice(h * nl, (h + 1) * nl), slice(start, start + head_sizes[h])
            box, obj, cls = joint[:, lv]
            out.append(
                HeadTerms(box, obj, cls, n_pos[lv], soft[rw], keys[rw], winner[rw], starts[h * nl], shapes)
            )
            start += head_sizes[h]
        return out, joint

    def _box_iou(
        self,
        cand: Candidates,
        rows: torch.Tensor,
        tgt: torch.Tensor,
        constrained: Sequence[bool],
        head_sizes: Sequence[int],
        tables: LevelTables,
        pos: torch.Tensor | None,
    ) -> torch.Tensor:
        """CIoU of the predicted and target boxes at the candidates, in grid units relative to the
        cell; `pos` (masked form) replaces the targets of non-positives by an inert filler box."""
        info = tables.decode[cand.level_anchor]  # (N, 5): grid W, H, anchor w, h, stride
        size, work = info[:, :2], rows.dtype
        txy, twh = (tgt[:, 2:4] * size - cand.fields[:, GI : GJ + 1]).to(work), (tgt[:, 4:6] * size).to(work)
        if all(c == constrained[0] for c in constrained):
            pxy, pwh = decode_box(rows, info[:, 2:4], constrained[0])
        else:  # heads with different decoders: decode each head's rows with its own
            parts = zip(rows.split(head_sizes), info[:, 2:4].split(head_sizes), constrained, strict=True)
            pxy, pwh = (torch.cat(p) for p in zip(*(decode_box(*part) for part in parts), strict=True))
        tbox = torch.cat((txy - twh / 2, txy + twh / 2), 1)
        if pos is not None:
            tbox = torch.where(pos[:, None], tbox, tables.constant((0.0, 0.0, 1.0, 1.0)))
        return bbox_iou(torch.cat((pxy - pwh / 2, pxy + pwh / 2), 1), tbox, xywh=False, kind="ciou")

    def _positives_denominator(self, n_pos: torch.Tensor) -> torch.Tensor:
        """Per level, the count the box and class sums are divided by: this process's positives, or
        under DistributedDataParallel the global count over the replicas (see `distribute`)."""
        if self.replicas == 1:
            return n_pos.clamp(min=1)
        import torch.distributed as dist

        total_pos = n_pos.detach().clone()
        dist.all_reduce(total_pos)
        return total_pos.clamp(min=1) / self.replicas

    # -- the loss -------------------------------------------------------------------------------
    def __call__(
        self, preds: Sequence[torch.Tensor], targets: torch.Tensor, imgs: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        heads, weights = self.labelled_heads(preds, targets, imgs)
        first_map = heads[0][0][0]
        targets = targets.to(first_map.device)
        _, joint = self._joint_terms(heads, targets)
        # Weighted sums over levels and heads: box and cls plain, obj with the level balance; then gains.
        items = (joint * self._term_weights(weights, joint)).sum(1)
        items = items * self._gains(joint)
        loss = items.sum()
        return loss.reshape(1) * first_map.shape[0], torch.cat((items, loss[None])).detach()

    def _term_weights(self, head_weights: tuple[float, ...], joint: torch.Tensor) -> torch.Tensor:
        """(3, heads * nl) weights of the joint terms: the head's weight, times the balance for obj."""
        rows = [[w for w in head_weights for _ in self.balance]]
        rows.insert(1, [w * b for w in head_weights for b in self.balance])
        rows.append(rows[0])
        key = ("term_weights", joint.device, joint.dtype, head_weights)
        if key not in self._constants:
            self._constants[key] = torch.tensor(rows, device=joint.device, dtype=joint.dtype)
        return self._constants[key]

    def _gains(self, joint: torch.Tensor) -> torch.Tensor:
        key = ("gains", joint.device, joint.dtype)
        if key not in self._constants:
            g = self.gains
            self._constants[key] = torch.tensor(
                [g["box"], g["obj"], g["cls"]], device=joint.device, dtype=joint.dtype
            )
        return self._constants[key]


def _rounds_to(size: float, cells: int) -> bool:
    """Whether a grid of `cells` can cover `size` (in the next level's cells), rounded down or up."""
    return math.floor(size) <= cells <= math.ceil(size)


def _check_target_boxes(boxes: torch.Tensor) -> None:
    """Refuse target boxes (n, 4) [x, y, w, h] that cannot be normalised to the image: not finite,
    negative sizes, or a coordinate more than one image away from it ([-1, 2]; pixels, most likely)."""
    xy_lo, xy_hi = torch.aminmax(boxes[:, :2])
    wh_lo, wh_hi = torch.aminmax(boxes[:, 2:])
    finite, xy_lo, xy_hi, wh_lo, wh_hi = torch.stack(
        (torch.isfinite(boxes).all().to(boxes.dtype), xy_lo, xy_hi, wh_lo, wh_hi)
    ).tolist()
    if not finite:
        raise ValueError("target boxes must be finite (a nan or inf in x, y, w or h)")
    if wh_lo < 0:
        raise ValueError(f"target widths and heights must not be negative (smallest {wh_lo:g})")
    if xy_lo < -1 or max(xy_hi, wh_hi) > 2:
        raise ValueError(
            "target boxes must be normalised to the image, x, y, w, h in [0, 1]; got values from "
            f"{min(xy_lo, wh_lo):g} to {max(xy_hi, wh_hi):g} (pixel coordinates?)"
        )


def _block_of_rows(cand: Candidates, head_sizes: Sequence[int], nl: int) -> torch.Tensor:
    """Each candidate's level block, head * nl + level, for candidates listed head by head."""
    if len(head_sizes) == 1:
        return cand.level
    head = torch.cat([torch.full((k,), h * nl, device=cand.fields.device) for h, k in enumerate(head_sizes)])
    return cand.level + head


def _detection_head(model: Any) -> Any:
    from yolov7lib.engine.ema import unwrap  # the model inside (Distributed)DataParallel

    if isinstance(model, torch.nn.Module):
        model = unwrap(model)
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

    `model` is a kit model (also inside DataParallel or DistributedDataParallel), a model whose last
    module is the head (`model.model[-1]`, as the reference's), or the head itself. `hyp` is a
    hyperparameter profile name, a YAML path or a dict, unscaled (as in the hyp files); packaged
    defaults fill missing keys, and a key the kit does not read is refused. `img_size` is the nominal
    training size (scales the objectness gain). `loss_ota` picks SimOTA (1) or the plain assignment
    (0); auxiliary maps in the predictions switch on the auxiliary-head assigner chosen by `aux_assign`.
    """
    hyp = dict(hyp) if isinstance(hyp, Mapping) else load_hyp(hyp)
    return YOLOv7Loss(_detection_head(model), hyp, img_size)
