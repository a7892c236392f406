"""A plain per-image oracle of the label assignment and the loss, and checks of the oracle itself.

The oracle follows the steps of the reference implementation's ComputeLoss / ComputeLossOTA /
ComputeLossAuxOTA, written independently of yolov7lib.loss: candidates level by level, then image by
image a Python loop over targets for the dynamic-k selection, a loop over contested candidates for the
conflicts, and sequential writes of the objectness targets. test_assign.py and test_loss.py compare the
batched implementation against it; benchmarks/bench_loss.py times both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from yolov7lib.ops import bbox_iou, box_iou, xywh2xyxy

# -- a detection head with the contract's attributes, and random batches -----------------------------
P5_ANCHORS_PX = [[12, 16, 19, 36, 40, 28], [36, 75, 76, 55, 72, 146], [142, 110, 192, 243, 459, 401]]
P6_ANCHORS_PX = [
    [19, 27, 44, 40, 38, 94],
    [96, 68, 86, 152, 180, 137],
    [140, 301, 303, 264, 238, 542],
    [436, 615, 739, 380, 925, 792],
]


class FakeHead(nn.Module):
    """Just the attributes of the head contract (CONTRIBUTING.md) that the loss reads."""

    def __init__(
        self,
        p6: bool = False,
        nc: int = 80,
        anchors_px: list[list[int]] | None = None,
        strides: list[float] | None = None,
    ) -> None:
        super().__init__()
        anchors_px = anchors_px or (P6_ANCHORS_PX if p6 else P5_ANCHORS_PX)
        strides = strides or [8.0, 16.0, 32.0, 64.0][: len(anchors_px)]
        self.nl, self.na, self.nc, self.no = len(anchors_px), len(anchors_px[0]) // 2, nc, nc + 5
        self.register_buffer("stride", torch.tensor(strides))
        grid_units = torch.tensor(anchors_px, dtype=torch.float32).view(self.nl, self.na, 2)
        self.register_buffer("anchors", grid_units / self.stride.view(-1, 1, 1))


def random_maps(
    head: FakeHead,
    batch: int,
    img: int,
    gen: torch.Generator,
    aux: bool = False,
    scale: float = 1.0,
    img_h: int | None = None,
) -> list[torch.Tensor]:
    """Random raw maps for `img`-pixel square images, or `img_h` x `img` ones."""
    h = img_h or img
    maps = [
        torch.randn(batch, head.na, h // int(s), img // int(s), head.no, generator=gen, dtype=torch.float64)
        * scale
        for s in head.stride
    ]
    if aux:
        maps += [torch.randn(m.shape, generator=gen, dtype=torch.float64) * scale for m in maps]
    return maps


def random_targets(counts: list[int], nc: int, gen: torch.Generator, kind: str = "mixed") -> torch.Tensor:
    """Targets for images with the given object counts; `kind` mixed, tiny, huge, border or crowded."""
    rows = []
    for b, n in enumerate(counts):
        if n == 0:
            continue
        xy = torch.rand(n, 2, generator=gen, dtype=torch.float64)
        wh = torch.rand(n, 2, generator=gen, dtype=torch.float64) ** 2 * 0.6 + 0.004
        if kind == "tiny":
            wh = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 0.02 + 0.001
        elif kind == "huge":
            wh = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 0.3 + 0.7
        elif kind == "border":
            xy = torch.randint(0, 2, (n, 2), generator=gen).double()  # centres on the image border
        elif kind == "crowded":  # clustered centres, many sharing cells, some exact duplicates
            xy = 0.5 + (torch.rand(n, 2, generator=gen, dtype=torch.float64) - 0.5) * 0.15
            xy[1::4] = xy[0::4][: len(xy[1::4])]
            wh[1::4] = wh[0::4][: len(wh[1::4])]
        cls = torch.randint(0, nc, (n, 1), generator=gen).double()
        rows.append(torch.cat((torch.full((n, 1), float(b), dtype=torch.float64), cls, xy, wh), 1))
    return torch.cat(rows) if rows else torch.zeros(0, 6, dtype=torch.float64)


# -- the oracle ---------------------------------------------------------------------------------------
# Neighbour cells: (dx, dy) added to the centre cell, and which side's condition proposes them.
NEIGHBOURS = ((-1, 0, "left"), (0, -1, "up"), (1, 0, "right"), (0, 1, "down"))


@dataclass
class OracleLabels:
    """Per level, the positives as rows (image, anchor, gj, gi, target index), reference order."""

    levels: list[list[tuple[int, int, int, int, int]]] = field(default_factory=list)


def positive_rows(labels: Any) -> list[list[tuple[int, ...]]]:
    """The kit's labels (a `yolov7lib.loss.Assignment`) as the oracle lists them: per level, the rows
    (image, anchor, gj, gi, target) of the positives."""
    return [list(zip(*(f.tolist() for f in level), strict=True)) for level in labels.positives()]


def candidate_rows(cand: Any) -> list[list[tuple[int, ...]]]:
    """The kit's candidates (a `yolov7lib.loss.Candidates`) as `oracle_candidates` lists them."""
    fields = [cand.image, cand.anchor, cand.gj, cand.gi, cand.target]
    return [list(zip(*(f[s].tolist() for f in fields), strict=True)) for s in cand.blocks]


def oracle_candidate_table(
    targets: torch.Tensor, grids: list[tuple[int, int]], anchors: torch.Tensor, anchor_t: float, bias: float
) -> list[torch.Tensor]:
    """Per level, an (N, 5) table of candidate rows (image, anchor, gj, gi, proposing target), ordered
    offset (centre, left, up, right, down), then anchor, then target."""
    out = []
    n, na = targets.shape[0], anchors.shape[1]
    index = torch.arange(n)
    for level, (h, w) in enumerate(grids):
        gx, gy = targets[:, 2] * w, targets[:, 3] * h
        sides = {
            "left": (gx % 1.0 < bias) & (gx > 1.0),
            "up": (gy % 1.0 < bias) & (gy > 1.0),
            "right": ((w - gx) % 1.0 < bias) & (w - gx > 1.0),
            "down": ((h - gy) % 1.0 < bias) & (h - gy > 1.0),
        }
        proposals = [(0.0, 0.0, torch.ones(n, dtype=torch.bool))]
        proposals += [(dx * bias, dy * bias, sides[name]) for dx, dy, name in NEIGHBOURS]
        parts = []
        for dx, dy, side_ok in proposals:
            gi = (gx + dx).long().clamp(0, w - 1)  # .long() truncates, as the reference does
            gj = (gy + dy).long().clamp(0, h - 1)
            for a in range(na):
                rw, rh = targets[:, 4] * w / anchors[level, a, 0], targets[:, 5] * h / anchors[level, a, 1]
                worst = torch.stack((rw, 1 / rw, rh, 1 / rh)).max(0).values
                ok = side_ok & (worst < anchor_t)
                rows = torch.stack((targets[:, 0].long(), torch.full_like(index, a), gj, gi, index), 1)
                parts.append(rows[ok])
        out.append(torch.cat(parts) if parts else torch.zeros(0, 5, dtype=torch.long))
    return out


def oracle_candidates(
    targets: torch.Tensor, grids: list[tuple[int, int]], anchors: torch.Tensor, anchor_t: float, bias: float
) -> list[list[tuple[int, int, int, int, int]]]:
    """`oracle_candidate_table` as lists of tuples."""
    return [
        [tuple(r) for r in t.tolist()]
        for t in oracle_candidate_table(targets, grids, anchors, anchor_t, bias)
    ]


def _decode(rows: torch.Tensor, cells: torch.Tensor, anchor: torch.Tensor, constrained: bool) -> torch.Tensor:
    """(N, >=4) raw rows at cells (N, 2: gi, gj) with anchors (N, 2) -> (N, 4) xywh in grid units."""
    s = rows[:, :2].sigmoid()
    xy = s * 2.0 - 0.5 if constrained else s * 3.0 - 1.0
    wh = (rows[:, 2:4].sigmoid() * 2) ** 2 * anchor
    return torch.cat((xy + cells, wh), 1)


def oracle_simota(
    cands: list[torch.Tensor],
    maps: list[torch.Tensor],
    targets: torch.Tensor,
    img_hw: tuple[int, int],
    strides: list[float],
    anchors: torch.Tensor,
    topk: int,
    constrained: bool = True,
) -> OracleLabels:
    """SimOTA image by image, target by target (reference ComputeLossOTA.build_targets)."""
    nl, batch = len(maps), maps[0].shape[0]
    levels: list[list[tuple[int, int, int, int, int]]] = [[] for _ in range(nl)]
    h_img, w_img = img_hw
    for b in range(batch):
        gts = torch.nonzero(targets[:, 0] == b).flatten()
        if len(gts) == 0:
            continue
        cols = [c[c[:, 0] == b] for c in cands]  # this image's candidates, level by level
        from_level = torch.cat([torch.full((len(c),), i) for i, c in enumerate(cols)])
        if len(from_level) == 0:
            continue
        boxes, logits = [], []
        for level, c in enumerate(cols):
            rows = maps[level][c[:, 0], c[:, 1], c[:, 2], c[:, 3]]
            grid = torch.stack((c[:, 3], c[:, 2]), 1)
            boxes.append(_decode(rows, grid, anchors[level][c[:, 1]], constrained) * strides[level])
            logits.append(rows[:, 4:])
        pbox = xywh2xyxy(torch.cat(boxes))
        logit = torch.cat(logits)
        tb = targets[gts][:, 2:6] * targets.new_tensor([w_img, h_img, w_img, h_img])
        iou = box_iou(xywh2xyxy(tb), pbox)  # (m, C)
        y = (logit[:, 1:].sigmoid() * logit[:, :1].sigmoid()).sqrt()
        joint = torch.log(y / (1 - y))[None].expand(len(gts), -1, -1)
        onehot = F.one_hot(targets[gts, 1].long(), logit.shape[1] - 1).to(y.dtype)[:, None].expand_as(joint)
        cls_cost = F.binary_cross_entropy_with_logits(joint, onehot, reduction="none").sum(2)
        cost = cls_cost + 3.0 * -torch.log(iou + 1e-8)

        m, c = cost.shape
        matching = torch.zeros(m, c, dtype=torch.long)
        for g in range(m):
            k = max(int(torch.topk(iou[g], min(topk, c)).values.sum()), 1)
            order = torch.sort(cost[g], stable=True).indices  # ties: earlier candidate first
            matching[g, order[:k]] = 1
        contested = matching.sum(0) > 1
        matching[:, contested] = 0
        matching[cost[:, contested].argmin(0), torch.nonzero(contested).flatten()] = 1
        taken = matching.sum(0) > 0
        owner = gts[matching[:, taken].argmax(0)]
        table = torch.cat(cols)[taken]
        table[:, 4] = owner
        for level in range(nl):
            levels[level] += [tuple(r) for r in table[from_level[taken] == level].tolist()]
    return OracleLabels(levels)


def oracle_plain(cands: list[torch.Tensor]) -> OracleLabels:
    """Plain YOLOv5-style labels: every candidate is a positive of the target that proposed it."""
    return OracleLabels([sorted((tuple(r) for r in t.tolist()), key=lambda r: r[0]) for t in cands])


@dataclass
class OracleConfig:
    simota: bool = True
    anchor_t: float = 4.0
    topk: int = 10
    aux_assign: str = "coarse_to_fine"
    aux_constrained: bool = True
    aux_weight: float = 0.25
    gr: float = 1.0
    label_smoothing: float = 0.0
    cls_pw: float = 1.0
    obj_pw: float = 1.0
    fl_gamma: float = 0.0
    gains: tuple[float, float, float] = (0.05, 0.7, 0.3)  # box, obj, cls (already scaled)


def oracle_config(hyp: dict, nl: int, nc: int, img_size: int, has_aux: bool) -> OracleConfig:
    """The oracle's settings for a hyp dict, gains scaled as the reference's train.py scales them."""
    return OracleConfig(
        simota=hyp["loss_ota"] == 1,
        anchor_t=hyp["anchor_t"],
        topk=hyp["ota_topk"] or (20 if has_aux else 10),
        aux_assign=hyp["aux_assign"],
        aux_constrained=bool(hyp["aux_constraint"]),
        aux_weight=hyp["aux_weight"],
        gr=hyp["gr"],
        label_smoothing=hyp["label_smoothing"],
        cls_pw=hyp["cls_pw"],
        obj_pw=hyp["obj_pw"],
        fl_gamma=hyp["fl_gamma"],
        gains=(
            hyp["box"] * 3 / nl,
            hyp["obj"] * (img_size / 640) ** 2 * 3 / nl,
            hyp["cls"] * nc / 80 * 3 / nl,
        ),
    )


def oracle_assign(
    cfg: OracleConfig,
    head: FakeHead,
    maps: list[torch.Tensor],
    targets: torch.Tensor,
    img_hw: tuple[int, int],
) -> tuple[OracleLabels, OracleLabels | None]:
    nl = head.nl
    lead, aux = maps[:nl], (maps[nl:] or None)
    grids = [tuple(p.shape[2:4]) for p in lead]
    strides = [float(s) for s in head.stride]

    def labels(bias: float, guide: list[torch.Tensor], constrained: bool) -> OracleLabels:
        cands = oracle_candidate_table(targets, grids, head.anchors, cfg.anchor_t, bias)
        if not cfg.simota:
            return oracle_plain(cands)
        return oracle_simota(cands, guide, targets, img_hw, strides, head.anchors, cfg.topk, constrained)

    fine = labels(0.5, lead, True)
    if aux is None:
        return fine, None
    if cfg.aux_assign == "lead_guided" or (cfg.aux_assign == "independent" and not cfg.simota):
        return fine, fine
    if cfg.aux_assign == "independent":
        return fine, labels(0.5, aux, cfg.aux_constrained)
    if cfg.aux_assign == "coarse_to_fine":
        return fine, labels(1.0, lead, True)
    raise ValueError(f"the oracle has no auxiliary assigner {cfg.aux_assign!r}")  # a new one: write it here


def _bce_mean(logits: torch.Tensor, target: torch.Tensor, pos_weight: float, gamma: float) -> torch.Tensor:
    loss = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([pos_weight]), reduction="none")(logits, target)
    if gamma > 0:
        p = logits.sigmoid()
        p_t = target * p + (1 - target) * (1 - p)
        loss = loss * (target * 0.25 + (1 - target) * 0.75) * (1.0 - p_t) ** gamma
    return loss.mean()


def oracle_head_terms(
    cfg: OracleConfig,
    head: FakeHead,
    maps: list[torch.Tensor],
    labels: OracleLabels,
    targets: torch.Tensor,
    constrained: bool,
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per level (box, obj, cls, objectness target map), as the reference's loss loop computes them."""
    out = []
    cp, cn = 1.0 - 0.5 * cfg.label_smoothing, 0.5 * cfg.label_smoothing
    for level, p in enumerate(maps):
        _, _, h, w, _ = p.shape
        tobj = torch.zeros_like(p[..., 4])
        box = cls = p.new_zeros(())
        rows = labels.levels[level]
        if rows:
            b, a, gj, gi, t = torch.tensor(rows).T
            ps = p[b, a, gj, gi]
            pbox = _decode(ps, torch.zeros(len(rows), 2), head.anchors[level][a], constrained)
            tbox = targets[t, 2:6] * targets.new_tensor([w, h, w, h])
            tbox[:, :2] -= torch.stack((gi, gj), 1)
            iou = bbox_iou(pbox, tbox, xywh=True, kind="ciou")
            box = (1.0 - iou).mean()
            soft = ((1.0 - cfg.gr) + cfg.gr * iou.detach().clamp(0)).tolist()
            last = {}  # cell -> soft label of the last positive written there
            for row, value in zip(rows, soft, strict=True):
                last[row[:4]] = value
            cells = torch.tensor(list(last)).T
            tobj[cells[0], cells[1], cells[2], cells[3]] = torch.tensor(list(last.values()), dtype=tobj.dtype)
            if head.nc > 1:
                tc = torch.full_like(ps[:, 5:], cn)
                tc[torch.arange(len(rows)), targets[t, 1].long()] = cp
                cls = _bce_mean(ps[:, 5:], tc, cfg.cls_pw, cfg.fl_gamma)
        obj = _bce_mean(p[..., 4], tobj, cfg.obj_pw, cfg.fl_gamma)
        out.append((box, obj, cls, tobj))
    return out


def oracle_loss(
    cfg: OracleConfig,
    head: FakeHead,
    maps: list[torch.Tensor],
    targets: torch.Tensor,
    img_hw: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss x batch size, [box, obj, cls, total]) as the reference computes them."""
    nl = head.nl
    balance = [4.0, 1.0, 0.4] if nl == 3 else [4.0, 1.0, 0.25, 0.06, 0.02][:nl]
    lead_labels, aux_labels = oracle_assign(cfg, head, maps, targets, img_hw)
    lbox, lobj, lcls = 0.0, 0.0, 0.0
    for level, (box, obj, cls, _) in enumerate(
        oracle_head_terms(cfg, head, maps[:nl], lead_labels, targets, True)
    ):
        lbox, lobj, lcls = lbox + box, lobj + obj * balance[level], lcls + cls
    if aux_labels is not None:
        aux_terms = oracle_head_terms(cfg, head, maps[nl:], aux_labels, targets, cfg.aux_constrained)
        for level, (box, obj, cls, _) in enumerate(aux_terms):
            w = cfg.aux_weight
            lbox, lobj, lcls = lbox + w * box, lobj + w * obj * balance[level], lcls + w * cls
    gbox, gobj, gcls = cfg.gains
    lbox, lobj, lcls = lbox * gbox, lobj * gobj, lcls * gcls
    total = lbox + lobj + lcls
    items = torch.stack([torch.as_tensor(x, dtype=torch.float64) for x in (lbox, lobj, lcls, total)]).detach()
    return total * maps[0].shape[0], items


# -- checks of the oracle itself on cases worked out by hand -----------------------------------------
def test_oracle_candidates_worked_example() -> None:
    # Centre at grid (5.3, 7.8) on a 16 x 16 level with one anchor the size of the box.
    targets = torch.tensor([[0, 0, 5.3 / 16, 7.8 / 16, 2 / 16, 3 / 16]], dtype=torch.float64)
    anchors = torch.tensor([[[2.0, 3.0]]])
    fine = oracle_candidates(targets, [(16, 16)], anchors, 4.0, 0.5)[0]
    assert [(gi, gj) for _, _, gj, gi, _ in fine] == [(5, 7), (4, 7), (5, 8)]  # centre, left, down
    coarse = oracle_candidates(targets, [(16, 16)], anchors, 4.0, 1.0)[0]
    assert [(gi, gj) for _, _, gj, gi, _ in coarse] == [(5, 7), (4, 7), (5, 6), (6, 7), (5, 8)]
    wide = torch.tensor([[[9.0, 3.0]]])  # width ratio 4.5 >= anchor_t: no candidates at all
    assert oracle_candidates(targets, [(16, 16)], wide, 4.0, 1.0)[0] == []


def _fit(want: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """Raw (tx, ty, tw, th) that decode (bounded offsets) to `want` = (x off, y off, w, h) in grid units."""
    off = ((want[:2] + 0.5) / 2).clamp(1e-12, 1 - 1e-12)
    size = ((want[2:] / anchor).sqrt() / 2).clamp(1e-12, 1 - 1e-12)
    return torch.cat((torch.logit(off), torch.logit(size)))


def test_oracle_simota_dynamic_k_takes_the_best_candidates() -> None:
    # One level, one anchor; centre at (5.3, 6.2): candidates centre, left, up. The centre and left
    # cells predict the box exactly, the up cell a half-height box (IoU 1/2): k = int(2.5) = 2, so the
    # two exact ones are taken.
    head = FakeHead(nc=4, anchors_px=[[16, 24]], strides=[8.0])
    targets = torch.tensor([[0, 3, 5.3 / 16, 6.2 / 16, 2 / 16, 3 / 16]], dtype=torch.float64)
    maps = [torch.zeros(1, 1, 16, 16, 9, dtype=torch.float64)]
    anchor = head.anchors[0, 0].double()
    exact = torch.tensor([5.3, 6.2, 2.0, 3.0], dtype=torch.float64)
    for gi, gj, h in ((5, 6, 3.0), (4, 6, 3.0), (5, 5, 1.5)):
        want = exact - torch.tensor([gi, gj, 0, 0]) - torch.tensor([0, 0, 0, 3.0 - h])
        maps[0][0, 0, gj, gi, :4] = _fit(want, anchor)
    cands = oracle_candidate_table(targets, [(16, 16)], head.anchors, 4.0, 0.5)
    assert cands[0][:, [3, 2]].tolist() == [[5, 6], [4, 6], [5, 5]]
    labels = oracle_simota(cands, maps, targets, (128, 128), [8.0], head.anchors, 10)
    assert labels.levels[0] == [(0, 0, 6, 5, 0), (0, 0, 6, 4, 0)]


def test_oracle_simota_gives_a_shared_cell_to_the_cheaper_target() -> None:
    # Two same-class targets centred on the same cell centre (only the centre cell is a candidate),
    # sizes 2x2 and 3x3 cells, so the image has two columns for the one cell. The target the prediction
    # fits exactly has IoU 1 with both columns (k = 2) and takes both; the other (IoU 4/9, k = 1) also
    # takes the first column, loses that contest on cost, and ends with nothing. A cell proposed twice
    # is thus a positive twice, as in the reference.
    head = FakeHead(nc=2, anchors_px=[[20, 20]], strides=[8.0])
    targets = torch.tensor(
        [[0, 1, 5.5 / 16, 6.5 / 16, 2 / 16, 2 / 16], [0, 1, 5.5 / 16, 6.5 / 16, 3 / 16, 3 / 16]],
        dtype=torch.float64,
    )
    anchor = head.anchors[0, 0].double()
    for side, winner in ((2.0, 0), (3.0, 1)):
        maps = [torch.zeros(1, 1, 16, 16, 7, dtype=torch.float64)]
        maps[0][0, 0, 6, 5, :4] = _fit(torch.tensor([0.5, 0.5, side, side], dtype=torch.float64), anchor)
        cands = oracle_candidate_table(targets, [(16, 16)], head.anchors, 4.0, 0.5)
        assert cands[0][:, 4].tolist() == [0, 1]  # the same cell, proposed by each target
        labels = oracle_simota(cands, maps, targets, (128, 128), [8.0], head.anchors, 10)
        assert labels.levels[0] == [(0, 0, 6, 5, winner)] * 2
