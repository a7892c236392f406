"""Batched label assignment against the per-image oracle, and the behaviour of the Section 4.2 variants."""

from __future__ import annotations

import pytest
import torch
from test_assign_oracle import (
    FakeHead,
    OracleConfig,
    candidate_rows,
    oracle_assign,
    oracle_candidates,
    positive_rows,
    random_maps,
    random_targets,
)
from torch.utils._python_dispatch import TorchDispatchMode

from yolov7lib.configs import load_hyp
from yolov7lib.loss import (
    AUX_ASSIGNERS,
    COARSE_BIAS,
    FINE_BIAS,
    Assignment,
    build_loss,
    candidates,
    find_candidates,
)

IMG = 128


def _candidate_rows(targets: torch.Tensor, head: FakeHead, grids: list, bias: float) -> list[list]:
    cand = find_candidates(targets, grids, head.anchors, 4.0, bias, batch=int(targets[:, 0].max()) + 1)
    return candidate_rows(cand)


SCENARIOS = {
    # name: (object counts per image, target kind, prediction scale)
    "mixed": ([3, 0, 7, 1], "mixed", 1.0),
    "empty_images": ([0, 5, 0, 0], "mixed", 1.0),
    "single_object": ([1, 1, 1], "mixed", 1.0),
    "crowded": ([40, 25], "crowded", 1.0),
    "tiny": ([6, 6], "tiny", 1.0),
    "huge": ([5, 4], "huge", 1.0),
    "border": ([6, 3], "border", 1.0),
    "confident_predictions": ([8, 8], "mixed", 4.0),
    "constant_predictions": ([6, 9], "crowded", 0.0),  # all-zero maps: many exactly tied costs
}


@pytest.mark.parametrize("bias", [FINE_BIAS, COARSE_BIAS])
@pytest.mark.parametrize("p6", [False, True])
def test_candidates_equal_oracle(bias: float, p6: bool) -> None:
    gen = torch.Generator().manual_seed(1)
    head = FakeHead(p6=p6)
    grids = [(IMG // int(s), IMG // int(s)) for s in head.stride]
    for kind in ("mixed", "border", "crowded", "tiny", "huge"):
        targets = random_targets([9, 0, 4], head.nc, gen, kind)
        assert _candidate_rows(targets, head, grids, bias) == oracle_candidates(
            targets, grids, head.anchors, 4.0, bias
        )


def test_candidates_worked_example() -> None:
    # Centre at grid (5.3, 7.8) on a 16 x 16 level with an anchor of the box's size.
    targets = torch.tensor([[0, 0, 5.3 / 16, 7.8 / 16, 2 / 16, 3 / 16]], dtype=torch.float64)
    head = FakeHead(anchors_px=[[16, 24]], strides=[8.0])
    cand = find_candidates(targets, [(16, 16)], head.anchors, 4.0, FINE_BIAS, batch=1)
    cells = list(zip(cand.gi.tolist(), cand.gj.tolist(), strict=True))
    assert cells == [(5, 7), (4, 7), (5, 8)]  # centre, left (x in the left half), down (y in the lower)
    cand = find_candidates(targets, [(16, 16)], head.anchors, 4.0, COARSE_BIAS, batch=1)
    cells = list(zip(cand.gi.tolist(), cand.gj.tolist(), strict=True))
    assert cells == [(5, 7), (4, 7), (5, 6), (6, 7), (5, 8)]  # centre + 4 neighbours


@pytest.mark.parametrize("side", ["w", "h"])
def test_a_box_exactly_anchor_t_times_its_anchor_is_not_a_candidate(side: str) -> None:
    """The reference keeps an anchor when the worst side ratio is strictly below anchor_t (4.0): a box 4
    times its anchor (exact in binary) has no candidate there, a hair smaller has its 3 fine cells."""
    head = FakeHead(anchors_px=[[16, 24]], strides=[8.0])  # anchor 2 x 3 cells on a 16 x 16 level
    sizes = {"w": (8 / 16, 3 / 16), "h": (2 / 16, 12 / 16)}[side]  # 4x the anchor along one side
    for scale, expected in ((1.0, 0), (1 - 2**-20, 3)):
        w, h = sizes[0] * (scale if side == "w" else 1), sizes[1] * (scale if side == "h" else 1)
        targets = torch.tensor([[0, 0, 5.3 / 16, 7.8 / 16, w, h]], dtype=torch.float64)
        cand = find_candidates(targets, [(16, 16)], head.anchors, 4.0, FINE_BIAS, batch=1)
        assert cand.size == expected, (side, scale)
    small = torch.tensor(
        [[0, 0, 5.3 / 16, 7.8 / 16, 0.5 / 16, 3 / 16]], dtype=torch.float64
    )  # 1/4 the anchor
    assert find_candidates(small, [(16, 16)], head.anchors, 4.0, FINE_BIAS, batch=1).size == 0


def _loss_and_cfg(head: FakeHead, **hyp_over) -> tuple:
    hyp = load_hyp("p6" if head.nl == 4 else "p5") | hyp_over
    loss = build_loss(head, hyp, img_size=IMG)
    return loss, hyp


def _oracle_cfg(loss, has_aux: bool) -> OracleConfig:
    cfg = loss.assigner(has_aux).config
    return OracleConfig(
        simota=cfg.simota,
        anchor_t=cfg.anchor_t,
        topk=cfg.topk,
        aux_assign=cfg.aux_assign,
        aux_constrained=cfg.aux_constrained,
    )


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("setup", ["p5_lead", "p6_aux"])
def test_simota_equals_per_image_oracle(scenario: str, setup: str) -> None:
    counts, kind, scale = SCENARIOS[scenario]
    gen = torch.Generator().manual_seed(len(scenario))
    head = FakeHead(p6=setup == "p6_aux", nc=5)
    aux = setup == "p6_aux"
    maps = random_maps(head, len(counts), IMG, gen, aux=aux, scale=scale)
    targets = random_targets(counts, head.nc, gen, kind)
    loss, _ = _loss_and_cfg(head)
    lead, aux_labels = loss.assign(maps, targets)
    o_lead, o_aux = oracle_assign(_oracle_cfg(loss, aux), head, maps, targets, (IMG, IMG))
    assert positive_rows(lead) == o_lead.levels
    if aux:
        assert positive_rows(aux_labels) == o_aux.levels
    if scenario == "crowded":  # the crowded case exercises shared cells and contested candidates
        assert sum(map(len, o_lead.levels)) > 20


@pytest.mark.parametrize("aux_assign", AUX_ASSIGNERS)
@pytest.mark.parametrize("simota", [0, 1])
def test_aux_assigners_equal_oracle(aux_assign: str, simota: int) -> None:
    gen = torch.Generator().manual_seed(7)
    head = FakeHead(p6=True, nc=3)
    maps = random_maps(head, 3, IMG, gen, aux=True)
    targets = random_targets([5, 12, 0], head.nc, gen, "mixed")
    loss, _ = _loss_and_cfg(head, aux_assign=aux_assign, loss_ota=simota, aux_constraint=0)
    lead, aux = loss.assign(maps, targets)
    o_lead, o_aux = oracle_assign(_oracle_cfg(loss, True), head, maps, targets, (IMG, IMG))
    assert positive_rows(lead) == o_lead.levels
    assert positive_rows(aux) == o_aux.levels


def test_rectangular_images_scale_each_axis() -> None:
    # SimOTA's pixel IoUs scale x by the width and y by the height (the reference uses the height for both).
    gen = torch.Generator().manual_seed(3)
    head = FakeHead(nc=4)
    maps = random_maps(head, 2, IMG, gen, img_h=96)
    targets = random_targets([6, 4], head.nc, gen, "mixed")
    loss, _ = _loss_and_cfg(head)
    lead, _ = loss.assign(maps, targets, torch.zeros(2, 3, 96, IMG))
    o_lead, _ = oracle_assign(_oracle_cfg(loss, False), head, maps, targets, (96, IMG))
    assert positive_rows(lead) == o_lead.levels


# -- what each variant of Section 4.2 does to the labels ---------------------------------------------
def _sets(labels: Assignment) -> list[set[tuple[int, ...]]]:
    return [set(rows) for rows in positive_rows(labels)]


def test_coarse_candidates_contain_fine_ones_plus_far_neighbours() -> None:
    gen = torch.Generator().manual_seed(4)
    head = FakeHead(p6=True)
    grids = [(IMG // int(s), IMG // int(s)) for s in head.stride]
    targets = random_targets([20, 20], head.nc, gen, "mixed")
    fine = _candidate_rows(targets, head, grids, FINE_BIAS)
    coarse = _candidate_rows(targets, head, grids, COARSE_BIAS)
    for f, c in zip(fine, coarse, strict=True):
        assert set(f) <= set(c)
    assert sum(map(len, coarse)) > sum(map(len, fine))
    # Away from the border every valid anchor gives 3 fine and 5 coarse cells.
    inner = torch.tensor([[0, 0, 0.41, 0.57, 0.1, 0.1]], dtype=torch.float64)
    f = _candidate_rows(inner, head, grids, FINE_BIAS)
    c = _candidate_rows(inner, head, grids, COARSE_BIAS)
    assert [len(x) * 5 for x in f] == [len(x) * 3 for x in c] and sum(map(len, f)) > 0


def test_plain_coarse_positives_contain_fine_positives() -> None:
    gen = torch.Generator().manual_seed(5)
    head = FakeHead(p6=True)
    maps = random_maps(head, 2, IMG, gen, aux=True)
    targets = random_targets([10, 3], head.nc, gen, "mixed")
    loss, _ = _loss_and_cfg(head, loss_ota=0)
    lead, aux = loss.assign(maps, targets)
    assert all(f <= c for f, c in zip(_sets(lead), _sets(aux), strict=True))
    assert sum(map(len, _sets(aux))) > sum(map(len, _sets(lead)))


def test_simota_coarse_positives_need_not_contain_the_fine_ones() -> None:
    # As documented in assigners.py: one object, 3 fine and 4 coarse positives, and a fine positive cell
    # is not among the coarse ones (its target took a cheaper far coarse cell instead), as the oracle has.
    gen = torch.Generator().manual_seed(2)
    head = FakeHead(p6=True)
    maps = random_maps(head, 2, IMG, gen, aux=True)
    targets = random_targets([1, 1], head.nc, gen, "mixed")
    loss, _ = _loss_and_cfg(head)
    lead, aux = loss.assign(maps, targets)
    want = oracle_assign(_oracle_cfg(loss, True), head, maps, targets, (IMG, IMG))
    assert [positive_rows(lead), positive_rows(aux)] == [want[0].levels, want[1].levels]
    fine, coarse = ([{row[:4] for row in rows} for rows in positive_rows(lab)] for lab in (lead, aux))
    assert sum(map(len, fine)) == 3 and sum(map(len, coarse)) == 4
    assert [len(f - c) for f, c in zip(fine, coarse, strict=True)] == [1, 0, 0, 0]


def test_simota_coarse_labels_give_an_isolated_object_at_least_as_many_positives() -> None:
    # One object per image: no contests, and the coarse candidates' larger top-20 IoU sum gives a
    # dynamic k at least as large, so the coarse labels have at least as many positives as the fine.
    gen = torch.Generator().manual_seed(6)
    head = FakeHead(p6=True)
    maps = random_maps(head, 6, IMG, gen, aux=True)
    targets = random_targets([1] * 6, head.nc, gen, "mixed")
    targets[:, 4:] = torch.rand(6, 2, generator=gen, dtype=torch.float64) * 0.35 + 0.05  # anchor-sized
    loss, _ = _loss_and_cfg(head)
    lead, aux = loss.assign(maps, targets)
    counts = []
    for b in range(6):
        n_fine = int((lead.positive & (lead.candidates.image == b)).sum())
        n_coarse = int((aux.positive & (aux.candidates.image == b)).sum())
        counts.append((n_fine, n_coarse))
    assert all(c >= f >= 1 for f, c in counts)


def test_lead_guided_gives_the_aux_head_the_lead_labels() -> None:
    gen = torch.Generator().manual_seed(8)
    head = FakeHead(p6=True)
    maps = random_maps(head, 2, IMG, gen, aux=True)
    targets = random_targets([8, 5], head.nc, gen, "mixed")
    loss, _ = _loss_and_cfg(head, aux_assign="lead_guided")
    lead, aux = loss.assign(maps, targets)
    assert positive_rows(aux) == positive_rows(lead)
    # ... and the labels do not depend on the auxiliary predictions.
    other = maps[:4] + [torch.randn_like(m) for m in maps[4:]]
    assert positive_rows(loss.assign(other, targets)[1]) == positive_rows(aux)


def test_independent_assigns_the_aux_head_from_its_own_predictions() -> None:
    gen = torch.Generator().manual_seed(9)
    head = FakeHead(p6=True)
    maps = random_maps(head, 2, IMG, gen, aux=True)
    targets = random_targets([8, 5], head.nc, gen, "mixed")
    independent, _ = _loss_and_cfg(head, aux_assign="independent", aux_constraint=1)
    lead, aux = independent.assign(maps, targets)
    assert positive_rows(aux) != positive_rows(lead)
    # With auxiliary predictions equal to the lead's, independent and lead-guided labels coincide.
    same = maps[:4] + [m.clone() for m in maps[:4]]
    lead2, aux2 = independent.assign(same, targets)
    assert positive_rows(aux2) == positive_rows(lead2) == positive_rows(lead)


def test_coarse_to_fine_aux_labels_follow_the_lead_head_over_coarse_candidates() -> None:
    gen = torch.Generator().manual_seed(10)
    head = FakeHead(p6=True)
    maps = random_maps(head, 2, IMG, gen, aux=True)
    targets = random_targets([8, 5], head.nc, gen, "mixed")
    loss, _ = _loss_and_cfg(head)  # defaults: coarse_to_fine
    assert loss.assigner(True).config.aux_assign == "coarse_to_fine"
    lead, aux = loss.assign(maps, targets)
    other = maps[:4] + [torch.randn_like(m) for m in maps[4:]]
    assert positive_rows(loss.assign(other, targets)[1]) == positive_rows(aux)  # guided by the lead head only
    coarse_cells = set(zip(aux.candidates.gj.tolist(), aux.candidates.gi.tolist(), strict=True))
    fine_cells = set(zip(lead.candidates.gj.tolist(), lead.candidates.gi.tolist(), strict=True))
    assert fine_cells < coarse_cells
    assert positive_rows(aux) != positive_rows(lead)


def test_topk_follows_the_reference_per_head_kind() -> None:
    head5, head6 = FakeHead(), FakeHead(p6=True)
    assert _loss_and_cfg(head5)[0].assigner(False).config.topk == 10
    assert _loss_and_cfg(head6)[0].assigner(True).config.topk == 20
    assert _loss_and_cfg(head6, ota_topk=7)[0].assigner(True).config.topk == 7


def test_constraint_caps_the_aux_objectness_of_far_coarse_cells() -> None:
    # One level, one 2x2-cell anchor, a 2x2-cell target centred at grid (5.9, 6.5). Its coarse left
    # neighbour, cell (4, 6), sees the centre 1.9 cells from its corner. The lead head makes that cell
    # the coarse label (it predicts nothing useful elsewhere). The bounded auxiliary decoder reaches an
    # offset of 1.5 at most, so the auxiliary head's best prediction there is still 0.4 cells off and
    # its soft label (CIoU) stays below the IoU of two 2x2 boxes 0.4 apart, (2 - 0.4) / (2 + 0.4); the
    # relaxed decoder fits the target exactly and earns a soft label of 1.
    head = FakeHead(nc=2, anchors_px=[[16, 16]], strides=[8.0])
    targets = torch.tensor([[0, 1, 5.9 / 16, 6.5 / 16, 2 / 16, 2 / 16]], dtype=torch.float64)
    lead = torch.zeros(1, 1, 16, 16, 7, dtype=torch.float64)
    lead[0, 0, :, :, 2:4] = -30.0  # vanishing boxes everywhere ...
    lead[0, 0, 6, 4, :4] = torch.tensor([50.0, 0.0, 0.0, 0.0])  # ... but at the far cell
    bound = (2 - 0.4) / (2 + 0.4)
    for constraint in (1, 0):
        loss, _ = _loss_and_cfg(head, aux_constraint=constraint)
        aux = torch.zeros(1, 1, 16, 16, 7, dtype=torch.float64)
        best_x = 50.0 if constraint else float(torch.logit(torch.tensor(2.9 / 3, dtype=torch.float64)))
        aux[0, 0, 6, 4, :4] = torch.tensor([best_x, 0.0, 0.0, 0.0])  # y offset 0.5, size 2x2 either way
        _, aux_labels = loss.assign([lead, aux], targets)
        assert positive_rows(aux_labels) == [[(0, 0, 6, 4, 0)]]
        terms = loss.head_terms([aux], aux_labels, targets, constrained=bool(constraint))
        soft = float(terms.tobj[0][0, 0, 6, 4])
        if constraint:
            assert 0 < soft < bound
        else:
            assert soft == pytest.approx(1.0, abs=1e-6)  # eps of the CIoU formula


# -- no host synchronisation in the hot path ---------------------------------------------------------
class _DataDependentOps(TorchDispatchMode):
    """Records the ops whose result needs data on the host: .item()/.tolist(), nonzero, bool masks."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket.__name__)
        bool_index = name in ("index", "index_put", "index_put_") and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] or []) if i is not None
        )
        if name in ("_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique2") or bool_index:
            self.seen.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("simota", [0, 1])
def test_loss_step_reads_back_only_the_candidate_counts(simota: int, monkeypatch: pytest.MonkeyPatch) -> None:
    gen = torch.Generator().manual_seed(11)
    head = FakeHead(p6=True)
    maps = [m.requires_grad_() for m in random_maps(head, 3, IMG, gen, aux=True)]
    targets = random_targets([5, 0, 9], head.nc, gen, "crowded")
    loss, _ = _loss_and_cfg(head, loss_ota=simota)
    loss.compact_on_host = False  # the accelerator path (on the host, positives are compacted for speed)
    reads = []
    monkeypatch.setattr(candidates, "to_host", lambda t: reads.append(t.numel()) or t.tolist())
    with _DataDependentOps() as rec:  # the training step minus the input checks (free on the host)
        lead, aux = loss.assigner(True)(maps[:4], targets, (IMG, IMG), maps[4:])
        total = (
            loss.head_terms(maps[:4], lead, targets).total() + loss.head_terms(maps[4:], aux, targets).total()
        )
        total.backward()
    # One small read-back per candidate set (lead fine + aux coarse), nothing else data-dependent.
    assert rec.seen == [] and reads == [head.nl + 2] * 2
