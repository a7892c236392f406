"""The batching shortcuts of the loss give what the plain forms give: several candidate rules in one
search, several candidate sets in one SimOTA pass, several heads in one pass, targets in any order,
and the cached per-level tables follow changes of the anchors."""

from __future__ import annotations

import torch
from test_assign_oracle import (
    FakeHead,
    oracle_assign,
    oracle_config,
    oracle_head_terms,
    positive_rows,
    random_maps,
    random_targets,
)

from yolov7lib.configs import load_hyp
from yolov7lib.loss import COARSE_BIAS, FINE_BIAS, build_loss, find_candidates
from yolov7lib.loss.candidates import find_candidate_sets
from yolov7lib.loss.simota import simota_match, simota_match_sets

IMG = 128


def _grids(head: FakeHead) -> list[tuple[int, int]]:
    return [(IMG // int(s), IMG // int(s)) for s in head.stride]


def test_one_search_for_both_rules_equals_two_searches() -> None:
    gen = torch.Generator().manual_seed(21)
    head = FakeHead(p6=True)
    for kind in ("mixed", "border", "crowded"):
        targets = random_targets([7, 0, 12], head.nc, gen, kind)
        both = find_candidate_sets(targets, _grids(head), head.anchors, 4.0, (FINE_BIAS, COARSE_BIAS), 3)
        for cand, bias in zip(both, (FINE_BIAS, COARSE_BIAS), strict=True):
            alone = find_candidates(targets, _grids(head), head.anchors, 4.0, bias, 3)
            assert torch.equal(cand.fields, alone.fields) and cand.blocks == alone.blocks
            assert (cand.max_per_image, cand.max_targets_per_image) == (
                alone.max_per_image,
                alone.max_targets_per_image,
            )


def test_one_simota_pass_for_both_sets_equals_two_passes() -> None:
    gen = torch.Generator().manual_seed(22)
    head = FakeHead(p6=True, nc=5)
    maps = random_maps(head, 3, IMG, gen)
    targets = random_targets([9, 0, 25], head.nc, gen, "crowded")
    strides = [float(s) for s in head.stride]
    cands = find_candidate_sets(targets, _grids(head), head.anchors, 4.0, (FINE_BIAS, COARSE_BIAS), 3)
    together = simota_match_sets(cands, maps, targets, (IMG, IMG), strides, head.anchors, 20)
    for cand, (positive, matched) in zip(cands, together, strict=True):
        alone_pos, alone_matched = simota_match(cand, maps, targets, (IMG, IMG), strides, head.anchors, 20)
        assert torch.equal(positive, alone_pos)
        assert torch.equal(matched[positive], alone_matched[alone_pos])
        assert positive.any()


def test_target_order_does_not_change_the_labels() -> None:
    # The per-image tables are built by sorting on the image index: targets need not come sorted.
    gen = torch.Generator().manual_seed(23)
    head = FakeHead(p6=True, nc=4)
    maps = random_maps(head, 4, IMG, gen, aux=True)
    targets = random_targets([5, 0, 11, 3], head.nc, gen, "crowded")
    shuffled = targets[torch.randperm(len(targets), generator=gen)]
    loss = build_loss(head, load_hyp("p6"), img_size=IMG)
    ocfg = oracle_config(load_hyp("p6"), head.nl, head.nc, IMG, True)
    lead, aux = loss.assign(maps, shuffled)
    o_lead, o_aux = oracle_assign(ocfg, head, maps, shuffled, (IMG, IMG))
    for labels, oracle in ((lead, o_lead), (aux, o_aux)):
        rows = positive_rows(labels)
        assert rows == oracle.levels and sum(map(len, rows)) > 10


def test_objectness_targets_equal_the_oracle_maps() -> None:
    # Crowded images with duplicated boxes: cells shared by several positives keep the last label.
    gen = torch.Generator().manual_seed(24)
    head = FakeHead(p6=True, nc=3)
    maps = random_maps(head, 2, IMG, gen, aux=True)
    targets = random_targets([30, 12], head.nc, gen, "crowded")
    hyp = load_hyp("p6") | {"gr": 0.7}
    loss = build_loss(head, hyp, img_size=IMG)
    lead, aux = loss.assign(maps, targets)
    lead_terms, aux_terms = loss.heads_terms([(maps[:4], lead, True), (maps[4:], aux, True)], targets)
    ocfg = oracle_config(hyp, head.nl, head.nc, IMG, True)
    o_lead, o_aux = oracle_assign(ocfg, head, maps, targets, (IMG, IMG))
    for terms, o_labels, head_maps in ((lead_terms, o_lead, maps[:4]), (aux_terms, o_aux, maps[4:])):
        oracle = oracle_head_terms(ocfg, head, head_maps, o_labels, targets, True)
        for level, (_, obj, _, tobj) in enumerate(oracle):
            torch.testing.assert_close(terms.tobj[level], tobj, rtol=1e-12, atol=0)
            torch.testing.assert_close(terms.obj[level], obj, rtol=1e-9, atol=0)
    assert any(int((t > 0).sum()) < len(o_lead.levels[i]) for i, t in enumerate(lead_terms.tobj))  # shared


def test_cached_tables_follow_in_place_changes_of_the_anchors() -> None:
    gen = torch.Generator().manual_seed(25)
    head = FakeHead(nc=3)
    maps = random_maps(head, 2, IMG, gen)  # float64: the decoding tables hold converted anchors
    targets = random_targets([6, 6], head.nc, gen, "mixed")
    loss = build_loss(head, load_hyp("p5"), img_size=IMG)
    before = loss(maps, targets)[1]
    with torch.no_grad():
        head.anchors.mul_(1.5)  # e.g. anchors refitted to the data set, or a checkpoint loaded in place
    after = loss(maps, targets)[1]
    fresh = FakeHead(nc=3, anchors_px=(head.anchors * head.stride.view(-1, 1, 1)).view(3, -1).tolist())
    expect = build_loss(fresh, load_hyp("p5"), img_size=IMG)(maps, targets)[1]
    torch.testing.assert_close(after, expect, rtol=1e-12, atol=0)
    assert not torch.allclose(before, after)


def test_map_reads_give_the_gradients_of_plain_indexing() -> None:
    from yolov7lib.loss.maps import read_maps

    gen = torch.Generator().manual_seed(26)
    maps = [
        torch.randn(2, 3, h, h, 7, generator=gen, dtype=torch.float64, requires_grad=True) for h in (8, 4)
    ]
    cells = [torch.tensor([5, 0, 5, 100, 383]), torch.tensor([7, 7, 95])]  # repeated cells add up
    w_obj = torch.randn(2 * 3 * 64 + 2 * 3 * 16, generator=gen, dtype=torch.float64)
    w_rows = torch.randn(8, 7, generator=gen, dtype=torch.float64)
    obj, rows = read_maps(maps, cells)
    grads = torch.autograd.grad((obj * w_obj).sum() + (rows * w_rows).sum(), maps)
    plain_obj = torch.cat([m[..., 4].reshape(-1) for m in maps])
    plain_rows = torch.cat([m.reshape(-1, 7)[c] for m, c in zip(maps, cells, strict=True)])
    assert torch.equal(obj, plain_obj) and torch.equal(rows, plain_rows)
    plain = torch.autograd.grad((plain_obj * w_obj).sum() + (plain_rows * w_rows).sum(), maps)
    for g, p in zip(grads, plain, strict=True):
        torch.testing.assert_close(g, p, rtol=1e-12, atol=1e-15)
