"""COCO box AP computed by yolov7lib itself, vectorised with numpy, no pycocotools.

This is an independent implementation of the COCO detection protocol that the paper's AP, AP50, AP75,
AP_S, AP_M and AP_L (Tables 1, 2, 9, 10) are measured with; the tests check it against pycocotools.

Protocol, per image and category: detections sorted by score (stable, so ties keep their input order),
at most 100 kept. Ground truth is ignored when it is a crowd or outside the area range. At each IoU
threshold t in 0.50:0.05:0.95, each detection in turn takes, among the ground truths it has not lost to
an earlier detection (crowds can be taken many times), the one with the highest IoU >= t, preferring
non-ignored ones (the last one on equal IoU); IoU with a crowd is intersection over the detection's
area. A detection matched to an ignored ground truth, or unmatched and outside the area range, is
ignored. Per category, area range and detection limit (1, 10, 100 per image), the detections of all
images are sorted by score (stable), precision is made monotone, and sampled at recall 0:0.01:1 (0 past
the last recall); categories without non-ignored ground truth are left out (-1).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
MAX_DETECTIONS = (1, 10, 100)
AREA_RANGES = {
    "all": (0.0, 1e10),
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e10),
}
STAT_NAMES = (
    "ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large",
    "ar1", "ar10", "ar100", "ar_small", "ar_medium", "ar_large",
)  # fmt: skip
"""Names of the twelve COCO numbers, in pycocotools' `stats` order; also attributes of `CocoMetrics`."""


def _stat(name: str, doc: str) -> property:
    index = STAT_NAMES.index(name)
    return property(lambda self: float(self.stats[index]), doc=doc)


_MATCH_BUDGET = 4_000_000  # elements per (groups x area ranges x thresholds x ground truths) step


@dataclass
class CocoMetrics:
    """The twelve COCO numbers (-1 where undefined), per-category AP and the full curves.

    `precision` is (T=10, R=101, K, A=4, M=3) and `recall` (T, K, A, M), with the layout and -1
    convention of pycocotools' `COCOeval.eval`.
    """

    stats: np.ndarray
    cat_ids: list
    precision: np.ndarray = field(repr=False)
    recall: np.ndarray = field(repr=False)

    ap = _stat("ap", "AP at IoU 0.50:0.95, all areas, 100 detections per image (the paper's AP)")
    ap50 = _stat("ap50", "AP at IoU 0.50")
    ap75 = _stat("ap75", "AP at IoU 0.75")
    ap_small = _stat("ap_small", "AP of objects below 32^2 pixels")
    ap_medium = _stat("ap_medium", "AP of objects between 32^2 and 96^2 pixels")
    ap_large = _stat("ap_large", "AP of objects above 96^2 pixels")
    ar1 = _stat("ar1", "recall with 1 detection per image")
    ar10 = _stat("ar10", "recall with 10 detections per image")
    ar100 = _stat("ar100", "recall with 100 detections per image")
    ar_small = _stat("ar_small", "recall of small objects")
    ar_medium = _stat("ar_medium", "recall of medium objects")
    ar_large = _stat("ar_large", "recall of large objects")

    def as_dict(self) -> dict[str, float]:
        """The twelve numbers by name (`ap`, `ap50`, ..., `ar_large`)."""
        return {name: float(v) for name, v in zip(STAT_NAMES, self.stats, strict=True)}

    @property
    def per_class_ap(self) -> dict:
        """AP@0.5:0.95 per category id (all areas, 100 detections), -1 for categories without ground truth."""
        out = {}
        for k, cat in enumerate(self.cat_ids):
            s = self.precision[:, :, k, 0, -1]
            out[cat] = float(np.mean(s[s > -1])) if (s > -1).any() else -1.0
        return out

    def summary(self) -> str:
        """The twelve numbers as the usual COCO table."""
        rows = []
        for i in range(len(STAT_NAMES)):
            kind = "Average Precision  (AP)" if i < 6 else "Average Recall     (AR)"
            iou = {1: "0.50     ", 2: "0.75     "}.get(i, "0.50:0.95")
            area = {3: "small", 4: "medium", 5: "large", 9: "small", 10: "medium", 11: "large"}.get(i, "all")
            dets = {6: 1, 7: 10}.get(i, 100)
            rows.append(
                f" {kind} @[ IoU={iou} | area={area:>6s} | maxDets={dets:>3d} ] = {self.stats[i]:0.3f}"
            )
        return "\n".join(rows)


def summarize(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """The twelve COCO numbers from the (T, R, K, A, M) precision and (T, K, A, M) recall arrays."""

    def mean(values: np.ndarray) -> float:
        kept = values[values > -1]
        return float(np.mean(kept)) if kept.size else -1.0

    at50, at75 = np.flatnonzero(IOU_THRESHOLDS == 0.5), np.flatnonzero(IOU_THRESHOLDS == 0.75)
    all_, small, medium, large = range(4)
    return np.array(
        [
            mean(precision[:, :, :, all_, 2]),
            mean(precision[at50][:, :, :, all_, 2]),
            mean(precision[at75][:, :, :, all_, 2]),
            mean(precision[:, :, :, small, 2]),
            mean(precision[:, :, :, medium, 2]),
            mean(precision[:, :, :, large, 2]),
            mean(recall[:, :, all_, 0]),
            mean(recall[:, :, all_, 1]),
            mean(recall[:, :, all_, 2]),
            mean(recall[:, :, small, 2]),
            mean(recall[:, :, medium, 2]),
            mean(recall[:, :, large, 2]),
        ]
    )


def _box_iou_xywh(det: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU of xywh boxes (..., D, 4) x (..., G, 4) -> (..., D, G); over the detection's area for crowds."""
    dx, dy, dw, dh = (det[..., :, None, i] for i in range(4))
    gx, gy, gw, gh = (gt[..., None, :, i] for i in range(4))
    w = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)
    h = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    det_area, gt_area = dw * dh, gw * gh
    union = np.where(crowd[..., None, :], det_area, det_area + gt_area - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(inter > 0, inter / union, 0.0)


def _outside(area: np.ndarray) -> np.ndarray:
    """(n, A) True where an area lies outside each range."""
    lo, hi = np.array([r[0] for r in AREA_RANGES.values()]), np.array([r[1] for r in AREA_RANGES.values()])
    return (area[:, None] < lo) | (area[:, None] > hi)


@dataclass
class _Table:
    """Boxes of one kind (ground truth or detections) sorted by group = category x image, then rank."""

    group: np.ndarray
    box: np.ndarray
    area: np.ndarray
    crowd: np.ndarray
    score: np.ndarray
    rank: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        order = np.lexsort((np.arange(len(self.group)), -self.score, self.group))
        for name in ("group", "box", "area", "crowd", "score"):
            setattr(self, name, getattr(self, name)[order])
        starts = np.searchsorted(self.group, self.group, side="left")
        self.rank = np.arange(len(self.group)) - starts

    def keep(self, mask: np.ndarray) -> None:
        for name in ("group", "box", "area", "crowd", "score", "rank"):
            setattr(self, name, getattr(self, name)[mask])

    def spans(self, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        start = np.searchsorted(self.group, groups, side="left")
        return start, np.searchsorted(self.group, groups, side="right") - start


def _match(gt: _Table, dt: _Table) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching of every detection at every area range and threshold: (D, A, T) matched, ignored."""
    n_area, n_thr = len(AREA_RANGES), len(IOU_THRESHOLDS)
    matched = np.zeros((len(dt.group), n_area, n_thr), bool)
    gt_ignored = gt.crowd[:, None] | _outside(gt.area)  # (G, A)
    shared = np.intersect1d(np.unique(gt.group), np.unique(dt.group))
    ignored = np.zeros_like(matched)
    if len(shared):
        g_start, g_len = gt.spans(shared)
        d_start, d_len = dt.spans(shared)
        order = np.argsort(g_len, kind="stable")  # similar sizes share a chunk, padding stays small
        per_group = n_area * n_thr * np.maximum(g_len[order], 1)  # ascending
        first = 0
        while first < len(order):
            # the chunk's cost is its size times its largest (= last) group
            cost = (np.arange(first, len(order)) - first + 1) * per_group[first:]
            stop = first + max(1, int(np.searchsorted(cost, _MATCH_BUDGET, side="right")))
            chunk = order[first:stop]
            _match_chunk(
                gt,
                dt,
                gt_ignored,
                g_start[chunk],
                g_len[chunk],
                d_start[chunk],
                d_len[chunk],
                matched,
                ignored,
            )
            first = stop
    ignored |= ~matched & _outside(dt.area)[:, :, None]
    return matched, ignored


def _match_chunk(
    gt: _Table,
    dt: _Table,
    gt_ignored: np.ndarray,
    g_start: np.ndarray,
    g_len: np.ndarray,
    d_start: np.ndarray,
    d_len: np.ndarray,
    matched: np.ndarray,
    ignored: np.ndarray,
) -> None:
    """Match the detections of a chunk of groups, padded to common sizes, one detection rank at a time."""
    g_max, d_max = int(g_len.max()), int(d_len.max())
    g_valid = np.arange(g_max) < g_len[:, None]  # (C, G)
    d_valid = np.arange(d_max) < d_len[:, None]  # (C, D)
    g_idx = np.where(g_valid, g_start[:, None] + np.arange(g_max), 0)
    d_idx = np.where(d_valid, d_start[:, None] + np.arange(d_max), 0)
    crowd = gt.crowd[g_idx] & g_valid  # (C, G)
    iou = _box_iou_xywh(dt.box[d_idx], gt.box[g_idx], crowd)  # (C, D, G)
    iou = np.where(g_valid[:, None, :], iou, -np.inf)
    g_ign = gt_ignored[g_idx].transpose(0, 2, 1)[:, :, None, :]  # (C, A, 1, G)
    reusable = crowd[:, None, None, :]
    thresholds = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)[None, None, :, None]
    taken = np.zeros((len(g_len), g_ign.shape[1], len(IOU_THRESHOLDS), g_max), bool)  # (C, A, T, G)
    positions = np.arange(g_max)
    for d in range(d_max):
        this_iou = iou[:, d, None, None, :]  # (C, 1, 1, G)
        free = (this_iou >= thresholds) & ~(taken & ~reusable)
        regular = free & ~g_ign
        pool = np.where(regular.any(-1, keepdims=True), regular, free & g_ign)
        values = np.where(pool, this_iou, -np.inf)
        best = values.max(-1, keepdims=True)
        winner = g_max - 1 - np.argmax((pool & (values == best))[..., ::-1], axis=-1)  # last on ties
        hit = pool.any(-1) & d_valid[:, d, None, None]  # (C, A, T)
        won = hit[..., None] & (positions == winner[..., None])
        taken |= won
        rows = d_idx[:, d][d_valid[:, d]]
        matched[rows] = hit[d_valid[:, d]]
        ignored[rows] = (won & g_ign).any(-1)[d_valid[:, d]]


def _accumulate(
    gt: _Table, dt: _Table, matched: np.ndarray, ignored: np.ndarray, n_cats: int, n_imgs: int
) -> tuple[np.ndarray, np.ndarray]:
    """Precision (T, R, K, A, M) and recall (T, K, A, M) from the per-detection match flags."""
    n_thr, n_rec, n_area, n_det = (
        len(IOU_THRESHOLDS),
        len(RECALL_THRESHOLDS),
        len(AREA_RANGES),
        len(MAX_DETECTIONS),
    )
    precision = -np.ones((n_thr, n_rec, n_cats, n_area, n_det))
    recall = -np.ones((n_thr, n_cats, n_area, n_det))
    gt_cat = gt.group // n_imgs
    regular_gt = ~(gt.crowd[:, None] | _outside(gt.area))  # (G, A)
    n_regular = np.zeros((n_cats, n_area), np.int64)
    np.add.at(n_regular, gt_cat, regular_gt.astype(np.int64))
    d_start = np.searchsorted(dt.group, np.arange(n_cats) * n_imgs, side="left")
    d_end = np.searchsorted(dt.group, (np.arange(n_cats) + 1) * n_imgs, side="left")
    for k in range(n_cats):
        lo, hi = d_start[k], d_end[k]
        for m, limit in enumerate(MAX_DETECTIONS):
            within = lo + np.flatnonzero(dt.rank[lo:hi] < limit)
            order = within[np.argsort(-dt.score[within], kind="stable")]
            for a in range(n_area):
                npig = n_regular[k, a]
                if npig == 0:
                    continue
                counted = ~ignored[order, a, :].T  # (T, N)
                hits = matched[order, a, :].T
                tp = np.cumsum(hits & counted, axis=1).astype(float)
                fp = np.cumsum(~hits & counted, axis=1).astype(float)
                nd = tp.shape[1]
                recall[:, k, a, m] = tp[:, -1] / npig if nd else 0.0
                if not nd:
                    precision[:, :, k, a, m] = 0.0
                    continue
                rc = tp / npig
                pr = tp / (fp + tp + np.spacing(1))
                pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
                for t in range(n_thr):
                    at = np.searchsorted(rc[t], RECALL_THRESHOLDS, side="left")
                    precision[t, :, k, a, m] = np.where(at < nd, pr[t, np.minimum(at, nd - 1)], 0.0)
    return precision, recall


def check_image_ids(detections: Iterable[Mapping[str, Any]], known: set) -> None:
    """Raise ValueError when a detection names an image that the ground truth does not hold."""
    unknown = {d.get("image_id") for d in detections} - known
    if unknown:
        example = min(unknown, key=str)
        raise ValueError(
            f"{len(unknown)} detection image ids are not images of the ground truth, e.g. {example!r}"
        )


def _field(records: Sequence[Mapping[str, Any]], key: str, default: Any = None) -> list:
    if default is None:
        try:
            return [r[key] for r in records]
        except KeyError as err:
            raise ValueError(f"every record needs a {key!r} field") from err
    return [r.get(key, default) for r in records]


def evaluate_coco(
    gt: Mapping[str, Any] | str | Path,
    detections: Iterable[Mapping[str, Any]] | str | Path,
    img_ids: Sequence | None = None,
) -> CocoMetrics:
    """COCO box evaluation of `detections` against the COCO-format dataset `gt` (neither is modified).

    `gt` holds `images` (`id`), `categories` (`id`) and `annotations` (`image_id`, `category_id`, `bbox`
    xywh, `area`, `iscrowd`, optional `id`); `area` defaults to w x h and `iscrowd` to 0. Detections are
    records with `image_id`, `category_id`, `bbox` xywh and `score`. `img_ids` restricts the evaluation
    to some images. Detections on images absent from `gt` raise ValueError; detections of categories
    absent from `gt` are not scored. Either argument may also be the path of a json file.
    """
    if isinstance(gt, str | Path):
        gt = json.loads(Path(gt).read_text())
    if isinstance(detections, str | Path):
        detections = json.loads(Path(detections).read_text())
    detections = list(detections)
    known = {img["id"] for img in gt.get("images", [])}
    images = sorted(known if img_ids is None else set(img_ids))
    cats = sorted({c["id"] for c in gt.get("categories", [])})
    img_index = {img: i for i, img in enumerate(images)}
    cat_index = {cat: k for k, cat in enumerate(cats)}
    check_image_ids(detections, known)
    anns = list(gt.get("annotations", []))
    ids = [a["id"] for a in anns if "id" in a]
    if len(set(ids)) != len(ids) or any(not isinstance(i, int | np.integer) or i <= 0 for i in ids):
        raise ValueError("ground-truth annotation ids must be unique positive integers")

    def table(records: list, is_gt: bool) -> _Table:
        keep = [r for r in records if r.get("image_id") in img_index and r.get("category_id") in cat_index]
        box = np.array(_field(keep, "bbox"), dtype=float).reshape(-1, 4)
        group = np.array(
            [cat_index[r["category_id"]] * len(images) + img_index[r["image_id"]] for r in keep], np.int64
        )
        if is_gt:
            area = np.array(
                [r.get("area", b[2] * b[3]) for r, b in zip(keep, box.tolist(), strict=True)], float
            )
            crowd = np.array(_field(keep, "iscrowd", 0), bool)
            score = np.zeros(len(keep))
        else:
            area = box[:, 2] * box[:, 3]
            crowd = np.zeros(len(keep), bool)
            score = np.array(_field(keep, "score"), dtype=float)
        return _Table(group, box, area.reshape(-1), crowd.reshape(-1), score.reshape(-1))

    if not images or not cats:
        t, r, a, m = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), len(AREA_RANGES), len(MAX_DETECTIONS)
        precision, recall = -np.ones((t, r, len(cats), a, m)), -np.ones((t, len(cats), a, m))
        return CocoMetrics(
            stats=summarize(precision, recall), cat_ids=cats, precision=precision, recall=recall
        )
    gt_table, dt_table = table(anns, True), table(detections, False)
    dt_table.keep(dt_table.rank < MAX_DETECTIONS[-1])
    matched, ignored = _match(gt_table, dt_table)
    precision, recall = _accumulate(gt_table, dt_table, matched, ignored, len(cats), len(images))
    return CocoMetrics(stats=summarize(precision, recall), cat_ids=cats, precision=precision, recall=recall)
