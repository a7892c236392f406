"""The YOLOv7 loss against the per-image oracle, its gradients, gains, conventions and input checks."""

from __future__ import annotations

import pytest
import torch
import torch.distributed
import torch.nn as nn
from test_assign_oracle import (
    FakeHead,
    OracleConfig,
    candidate_rows,
    oracle_assign,
    oracle_candidates,
    oracle_config,
    oracle_loss,
    positive_rows,
    random_maps,
    random_targets,
)

from yolov7lib.configs import load_hyp
from yolov7lib.loss import (
    COARSE_BIAS,
    FINE_BIAS,
    build_loss,
    find_candidates,
    level_balance,
    scaled_gains,
)
from yolov7lib.loss.decoder import decode_box, decode_wh, decode_xy

IMG = 128

CASES = {
    # name: (p6 with auxiliary maps, nc, hyp overrides)
    "p5_plain": (False, 6, {"loss_ota": 0}),
    "p5_simota": (False, 6, {}),
    "p5_single_class": (False, 1, {}),
    "p5_smoothing_focal_weights": (
        False,
        4,
        {"label_smoothing": 0.1, "fl_gamma": 1.5, "cls_pw": 2.0, "obj_pw": 0.5, "gr": 0.6},
    ),
    "p6_coarse_to_fine": (True, 5, {}),
    "p6_coarse_to_fine_unconstrained": (True, 5, {"aux_constraint": 0}),
    "p6_lead_guided": (True, 5, {"aux_assign": "lead_guided"}),
    "p6_independent": (True, 5, {"aux_assign": "independent"}),
    "p6_plain_coarse": (True, 5, {"loss_ota": 0}),
    "p6_aux_weight": (True, 5, {"aux_weight": 0.7, "ota_topk": 13}),
}


def _oracle_cfg(hyp: dict, nl: int, nc: int, has_aux: bool) -> OracleConfig:
    return oracle_config(hyp, nl, nc, IMG, has_aux)


def _setup(case: str, seed: int, counts: list[int], kind: str = "mixed"):
    p6, nc, over = CASES[case]
    gen = torch.Generator().manual_seed(seed)
    head = FakeHead(p6=p6, nc=nc)
    hyp = load_hyp("p6" if p6 else "p5") | over
    maps = random_maps(head, len(counts), IMG, gen, aux=p6)
    targets = random_targets(counts, nc, gen, kind)
    return head, hyp, maps, targets


@pytest.mark.parametrize("case", list(CASES))
def test_loss_equals_per_image_oracle(case: str) -> None:
    head, hyp, maps, targets = _setup(case, seed=len(case), counts=[4, 0, 9, 1], kind="mixed")
    crowd = random_targets([0, 0, 0, 14], head.nc, torch.Generator().manual_seed(2), "crowded")
    targets = torch.cat((targets, crowd))
    loss, items = build_loss(head, hyp, img_size=IMG)(maps, targets, torch.zeros(4, 3, IMG, IMG))
    want, want_items = oracle_loss(
        _oracle_cfg(hyp, head.nl, head.nc, len(maps) > head.nl), head, maps, targets, (IMG, IMG)
    )
    torch.testing.assert_close(loss, want.reshape(1), rtol=1e-6, atol=0)
    torch.testing.assert_close(items, want_items, rtol=1e-6, atol=0)
    assert (items[:2] > 0).all() and bool(items[2] > 0) == (head.nc > 1)


@pytest.mark.parametrize("case", ["p5_simota", "p6_coarse_to_fine"])
def test_loss_without_targets_is_objectness_only(case: str) -> None:
    head, hyp, maps, _ = _setup(case, seed=3, counts=[0, 0])
    targets = torch.zeros(0, 6, dtype=torch.float64)
    loss, items = build_loss(head, hyp, img_size=IMG)(maps, targets)
    want, want_items = oracle_loss(
        _oracle_cfg(hyp, head.nl, head.nc, len(maps) > head.nl), head, maps, targets, (IMG, IMG)
    )
    torch.testing.assert_close(loss, want.reshape(1), rtol=1e-6, atol=0)
    torch.testing.assert_close(items, want_items, rtol=1e-6, atol=0)
    assert items[0] == 0 and items[2] == 0 and items[1] > 0


@pytest.mark.parametrize("case", ["p5_plain", "p6_coarse_to_fine"])
def test_masked_and_compacted_positives_give_the_same_loss(case: str) -> None:
    # The host path drops non-positive candidates before the terms; the accelerator path masks them.
    head, hyp, maps, targets = _setup(case, seed=12, counts=[7, 0, 12])
    maps = [m.requires_grad_() for m in maps]
    results = []
    for compact in (True, False):
        loss = build_loss(head, hyp, img_size=IMG)
        loss.compact_on_host = compact
        total, items = loss(maps, targets)
        grads = torch.autograd.grad(total, maps)
        results.append((items, grads))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-12, atol=0)
    for g1, g2 in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(g1, g2, rtol=1e-9, atol=1e-15)


def test_half_precision_maps_are_handled_in_float32() -> None:
    # AMP gives float16 maps: the loss works in float32 and matches the float32 maps of the same values.
    head, hyp, maps, targets = _setup("p6_coarse_to_fine", seed=13, counts=[6, 9])
    half = [m.half() for m in maps]
    loss = build_loss(head, hyp, img_size=IMG)
    lead_h, aux_h = loss.assign(half, targets.float())
    lead_f, aux_f = loss.assign([m.float() for m in half], targets.float())
    for a, b in ((lead_h, lead_f), (aux_h, aux_f)):
        assert torch.equal(a.positive, b.positive) and torch.equal(a.matched, b.matched)
    items_h = loss(half, targets.float())[1]
    assert items_h.dtype == torch.float32
    torch.testing.assert_close(items_h, loss([m.float() for m in half], targets.float())[1])


def test_loss_conventions_total_times_batch_and_detached_items() -> None:
    head, hyp, maps, targets = _setup("p6_coarse_to_fine", seed=4, counts=[3, 5, 2])
    maps = [m.requires_grad_() for m in maps]
    loss, items = build_loss(head, hyp, img_size=IMG)(maps, targets)
    assert loss.shape == (1,) and items.shape == (4,)
    torch.testing.assert_close(loss, items[3:] * 3)
    torch.testing.assert_close(items[3], items[:3].sum())
    assert loss.requires_grad and not items.requires_grad


@pytest.mark.parametrize("case", ["p5_plain", "p5_simota", "p6_coarse_to_fine", "p6_independent"])
def test_gradients_reach_every_lead_and_auxiliary_map(case: str) -> None:
    head, hyp, maps, targets = _setup(case, seed=5, counts=[6, 6])
    targets[:, 4:] = torch.rand(len(targets), 2, generator=torch.Generator().manual_seed(0)) * 0.3 + 0.1
    maps = [m.requires_grad_() for m in maps]
    loss, _ = build_loss(head, hyp, img_size=IMG)(maps, targets)
    loss.backward()
    for i, m in enumerate(maps):  # objectness reaches every level of every head
        assert m.grad is not None and torch.isfinite(m.grad).all(), i
        assert m.grad[..., 4].abs().sum() > 0, i
    heads = [maps[: head.nl], maps[head.nl :]] if len(maps) > head.nl else [maps]
    for h in heads:  # box and class terms reach each head through its positives
        assert sum(m.grad[..., :4].abs().sum() for m in h) > 0
        assert sum(m.grad[..., 5:].abs().sum() for m in h) > 0


@pytest.mark.parametrize("case", ["p5_simota", "p5_smoothing_focal_weights", "p6_coarse_to_fine"])
def test_objectness_soft_labels_send_no_gradient_to_the_boxes(case: str) -> None:
    """The soft label (1 - gr) + gr x IoU is a target, detached as in the reference: with the box and class
    gains at 0 the loss reaches the box channels only through it, so their gradient must be exactly 0."""
    head, hyp, maps, targets = _setup(case, seed=6, counts=[5, 3])
    maps = [m.requires_grad_() for m in maps]
    loss, items = build_loss(head, hyp | {"box": 0.0, "cls": 0.0}, img_size=IMG)(maps, targets)
    loss.backward()
    assert items[1] > 0 and items[0] == items[2] == 0
    assert all(m.grad[..., 4].abs().sum() > 0 for m in maps)
    assert all(torch.count_nonzero(m.grad[..., :4]) == 0 for m in maps)


def test_gains_are_scaled_once_in_build_loss_and_hyp_is_left_alone() -> None:
    hyp = load_hyp("p6")
    before = dict(hyp)
    gains = scaled_gains(hyp, nl=4, nc=20, img_size=1280)
    assert gains["box"] == pytest.approx(0.05 * 3 / 4)
    assert gains["cls"] == pytest.approx(0.3 * 20 / 80 * 3 / 4)
    assert gains["obj"] == pytest.approx(0.7 * (1280 / 640) ** 2 * 3 / 4)
    loss = build_loss(FakeHead(p6=True, nc=20), hyp, img_size=1280)
    assert loss.gains == gains and hyp == before
    # The items scale with the unscaled hyp values: doubling box doubles the box item only.
    head, hyp5, maps, targets = _setup("p5_simota", seed=6, counts=[5, 2])
    items = build_loss(head, hyp5, img_size=IMG)(maps, targets)[1]
    items2 = build_loss(head, hyp5 | {"box": 2 * hyp5["box"]}, img_size=IMG)(maps, targets)[1]
    torch.testing.assert_close(items2[:3], items[:3] * torch.tensor([2.0, 1.0, 1.0], dtype=items.dtype))


def test_aux_weight_enters_linearly() -> None:
    head, hyp, maps, targets = _setup("p6_coarse_to_fine", seed=7, counts=[4, 7])
    items = {
        w: build_loss(head, hyp | {"aux_weight": w}, img_size=IMG)(maps, targets)[1] for w in (0.0, 0.25, 1.0)
    }
    torch.testing.assert_close(items[0.25], items[0.0] + 0.25 * (items[1.0] - items[0.0]))
    # Weight 0: the lead head alone, with the assignment settings of a head that has auxiliary levels.
    lead_only = build_loss(head, hyp | {"ota_topk": 20}, img_size=IMG)(maps[:4], targets)[1]
    torch.testing.assert_close(items[0.0], lead_only)


@pytest.mark.parametrize("case", ["p5_simota", "p6_coarse_to_fine", "p6_coarse_to_fine_unconstrained"])
def test_labelled_heads_weighted_by_hand_give_the_loss(case: str) -> None:
    """`labelled_heads` (what benchmarks time the terms on) is the loss's own split into heads: its heads'
    unweighted terms, weighted by hand (head weight, level balance for obj, gains), give the loss items;
    the auxiliary head carries the Table 7 decoder setting."""
    head, hyp, maps, targets = _setup(case, seed=11, counts=[5, 0, 9])
    loss_fn = build_loss(head, hyp, img_size=IMG)
    heads, weights = loss_fn.labelled_heads(maps, targets)
    p6 = CASES[case][0]
    assert len(heads) == len(weights) == (2 if p6 else 1)
    assert [h[2] for h in heads] == [True] + ([bool(hyp["aux_constraint"])] if p6 else [])
    assert weights == ((1.0, hyp["aux_weight"]) if p6 else (1.0,))
    balance = torch.tensor(level_balance(head.nl))
    terms = loss_fn.heads_terms(heads, targets)
    by_hand = sum(
        w * torch.stack((t.box.sum(), (t.obj * balance).sum(), t.cls.sum()))
        for w, t in zip(weights, terms, strict=True)
    )
    gains = scaled_gains(hyp, head.nl, head.nc, IMG)
    by_hand = by_hand * torch.tensor([gains["box"], gains["obj"], gains["cls"]])
    torch.testing.assert_close(loss_fn(maps, targets)[1][:3], by_hand)


def test_level_balance_follows_the_reference_rule() -> None:
    assert level_balance(3) == (4.0, 1.0, 0.4)
    assert level_balance(4) == (4.0, 1.0, 0.25, 0.06)
    assert level_balance(5) == (4.0, 1.0, 0.25, 0.06, 0.02)
    with pytest.raises(ValueError, match="6 levels"):
        level_balance(6)


def test_bad_inputs_give_clear_errors() -> None:
    head, hyp, maps, targets = _setup("p6_coarse_to_fine", seed=8, counts=[2, 2])
    loss = build_loss(head, hyp, img_size=IMG)
    with pytest.raises(TypeError, match="training-mode"):
        loss((maps[0].flatten(1, 3), maps[:4]), targets)  # what eval mode returns
    with pytest.raises(ValueError, match="4 lead maps"):
        loss(maps[:3], targets)
    with pytest.raises(ValueError, match="auxiliary maps must lie on the lead grids"):
        loss([*maps[:4], maps[5], maps[4], *maps[6:]], targets)
    with pytest.raises(ValueError, match=r"\(n, 6\)"):
        loss(maps, targets[:, :5])
    bad = targets.clone()
    bad[0, 0] = 2
    with pytest.raises(ValueError, match="image indices"):
        loss(maps, bad)
    bad = targets.clone()
    bad[0, 1] = head.nc
    with pytest.raises(ValueError, match="classes"):
        loss(maps, bad)
    for column, value, message in (
        (2, IMG / 2, r"normalised to the image.*pixel coordinates"),  # a centre in pixels
        (5, 3.0, "normalised to the image"),
        (3, -1.5, "normalised to the image"),
        (4, -0.1, "must not be negative"),
        (2, float("nan"), "finite"),
        (5, float("inf"), "finite"),
    ):
        bad = targets.clone()
        bad[1, column] = value
        with pytest.raises(ValueError, match=message):
            loss(maps, bad)
    with pytest.raises(ValueError, match="aux_assign"):
        build_loss(head, hyp | {"aux_assign": "coarse"})(maps, targets)
    for key, value in (("loss_ota", 2), ("loss_ota", 0.5), ("aux_constraint", 2), ("aux_constraint", 0.5)):
        # 0.5 was truncated to 0 (plain labels, unbounded decoder), 2 taken as 1, without a word
        with pytest.raises(ValueError, match=rf"{key} must be 0 .* or 1 .*, got {value}"):
            build_loss(head, hyp | {key: value})(maps, targets)
    with pytest.raises(TypeError, match="detection head"):
        build_loss(nn.Linear(2, 2), hyp)
    with pytest.raises(ValueError, match=r"build_loss hyp: unknown hyperparameter\(s\) aux_asign;"):
        build_loss(head, hyp | {"aux_asign": "independent"})  # trained coarse-to-fine without a word


@pytest.mark.parametrize("case", ["p5_simota", "p6_coarse_to_fine"])
def test_maps_out_of_order_from_other_batches_or_images_give_clear_errors(case: str) -> None:
    # Each of these used to give a loss without a word: the levels met the wrong anchors, the images
    # the wrong targets, or SimOTA measured its IoUs in the wrong pixels.
    head, hyp, maps, targets = _setup(case, seed=9, counts=[2, 3])
    loss, nl = build_loss(head, hyp, img_size=IMG), head.nl
    lead, aux = maps[:nl], maps[nl:]
    with pytest.raises(ValueError, match=r"lead map 1 is a .* grid after lead map 0's .*head's order"):
        loss([*lead[::-1], *aux[::-1]], targets)  # deepest level first
    with pytest.raises(ValueError, match=r"lead map 1 is a .* grid"):
        loss([lead[0][:, :, : lead[0].shape[2] // 2], *lead[1:], *aux], targets)
    with pytest.raises(ValueError, match=rf"lead map {nl - 1} has shape \(1, .*expected \(2, "):
        loss([*lead[:-1], lead[-1][:1], *aux], targets)
    with pytest.raises(ValueError, match=r"imgs are 256x256 pixels but lead map 0 is a 16x16 grid"):
        loss(maps, targets, torch.zeros(2, 3, 2 * IMG, 2 * IMG))
    # Sizes that are not multiples of the strides round either way, as the networks' grids do.
    odd = random_maps(head, 2, 130, torch.Generator().manual_seed(1), aux=len(aux) > 0, img_h=100)
    assert [tuple(m.shape[2:4]) for m in odd[:3]] == [(12, 16), (6, 8), (3, 4)]
    assert torch.isfinite(loss(odd, targets, torch.zeros(2, 3, 100, 130))[0]).all()


def test_a_model_inside_data_parallel_gives_the_loss_of_the_bare_model() -> None:
    # As the reference's loss classes do (is_parallel); the wrapped model was refused as having no head.
    head, hyp, maps, targets = _setup("p6_coarse_to_fine", seed=10, counts=[2, 3])
    model = nn.Module()
    model.model = nn.Sequential(nn.Identity(), head)  # the head last, as in the reference's model.model
    want = build_loss(head, hyp, img_size=IMG)(maps, targets)[1]
    for wrapped in (model, nn.DataParallel(model), nn.DataParallel(head)):
        loss = build_loss(wrapped, hyp, img_size=IMG)
        assert loss.head is head
        torch.testing.assert_close(loss(maps, targets)[1], want, rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    head, hyp, maps, targets = _setup("p6_coarse_to_fine", seed=9, counts=[6, 0, 11])
    cpu = build_loss(head, hyp, img_size=IMG)(maps, targets)[1]
    head_cuda = head.to("cuda")
    gpu = build_loss(head_cuda, hyp, img_size=IMG)([m.cuda() for m in maps], targets.cuda())[1]
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-9, atol=0)


class _ToyEELAN(nn.Module):
    """Two cardinality groups merged by a sum, a lead head on the merge and an auxiliary head attached
    after the merge (full) or to one group before it (partial, Table 8)."""

    def __init__(self, partial: bool, no: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 2, 1)
        self.group1, self.group2 = nn.Conv2d(8, 8, 3, 1, 1), nn.Conv2d(8, 8, 3, 1, 1)
        self.lead, self.aux = nn.Conv2d(8, no, 1), nn.Conv2d(8, no, 1)
        self.partial, self.no = partial, no

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        s = self.stem(x)
        g1, g2 = self.group1(s), self.group2(s)
        merged = g1 + g2
        maps = [self.lead(merged), self.aux(g1 if self.partial else merged)]
        return [m.view(m.shape[0], 1, self.no, *m.shape[2:]).permute(0, 1, 3, 4, 2) for m in maps]


@pytest.mark.parametrize("partial", [False, True])
def test_partial_auxiliary_head_trains_only_through_its_group(partial: bool) -> None:
    torch.manual_seed(0)
    head = FakeHead(nc=2, anchors_px=[[8, 8]], strides=[2.0])
    net = _ToyEELAN(partial, head.no).double()
    imgs = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    targets = torch.tensor([[0, 1, 0.3, 0.6, 0.2, 0.3], [1, 0, 0.7, 0.4, 0.25, 0.2]], dtype=torch.float64)
    loss = build_loss(head, load_hyp("p6"), img_size=32)
    maps = net(imgs)
    _, aux_labels = loss.assign(maps, targets, imgs)
    loss.head_terms(maps[1:], aux_labels, targets).total().backward()  # the assistant loss alone
    assert net.group1.weight.grad.abs().sum() > 0 and net.stem.weight.grad.abs().sum() > 0
    reached = net.group2.weight.grad is not None and net.group2.weight.grad.abs().sum() > 0
    assert reached is not partial  # partial: the other group gets no gradient from the assistant loss
    net.zero_grad(set_to_none=True)
    loss(net(imgs), targets, imgs)[0].backward()  # the full loss trains both groups either way
    assert net.group2.weight.grad.abs().sum() > 0 and net.aux.weight.grad.abs().sum() > 0


# -- the registry's models (issue 3) -------------------------------------------------------------------
def _real_step(name: str, profile: str, img: int, batch: int) -> tuple[torch.nn.Module, list[torch.Tensor]]:
    from yolov7lib import create_model

    torch.manual_seed(0)
    model = create_model(name).train()
    imgs = torch.rand(batch, 3, img, img)
    maps = model(imgs)
    targets = random_targets([3] * batch, model.head.nc, torch.Generator().manual_seed(1), "mixed").float()
    targets[:, 4:] = targets[:, 4:].clamp(0.1, 0.6)
    loss, items = build_loss(model, profile, img_size=img)(maps, targets, imgs)
    assert torch.isfinite(loss).all() and (items[:3] > 0).all()
    loss.backward()
    return model, maps


def test_loss_trains_yolov7_tiny_lead_head() -> None:
    model, maps = _real_step("yolov7-tiny", "tiny", img=64, batch=2)
    assert len(maps) == model.head.nl == 3
    for conv in model.head.m:
        assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["yolov7-w6", "yolov7-e6e"])  # e6e: the partial auxiliary head (Table 8)
def test_loss_trains_lead_and_auxiliary_heads_of_p6_models(name: str) -> None:
    model, maps = _real_step(name, "p6", img=128, batch=1)
    assert len(maps) == 2 * model.head.nl == 8
    for conv in [*model.head.m, *model.head.m2]:  # lead and auxiliary output convolutions
        assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def _check_against_oracle(head, hyp, maps, targets, img_hw, loss_fn=None, imgs=None) -> None:
    loss_fn = loss_fn or build_loss(head, hyp, img_size=IMG)
    loss, items = loss_fn(maps, targets, imgs)
    cfg = oracle_config(hyp, head.nl, head.nc, IMG, len(maps) > head.nl)
    want, want_items = oracle_loss(cfg, head, maps, targets, img_hw)
    torch.testing.assert_close(loss, want.reshape(1), rtol=1e-9, atol=0)
    torch.testing.assert_close(items, want_items, rtol=1e-9, atol=0)


@pytest.mark.parametrize(
    "over",
    [
        {"obj_pw": 2.0, "cls_pw": 0.5},  # pos_weight without focal loss
        {"fl_gamma": 2.0},  # focal loss with pos_weight 1
        {"label_smoothing": 0.2, "gr": 0.5},  # smoothing and soft labels without focal loss
    ],
)
def test_bce_weights_and_focal_loss_one_at_a_time_equal_the_oracle(over: dict) -> None:
    gen = torch.Generator().manual_seed(41)
    head = FakeHead(nc=4)
    maps = random_maps(head, 2, IMG, gen)
    targets = random_targets([6, 4], head.nc, gen, "crowded")
    _check_against_oracle(head, load_hyp("p5") | over, maps, targets, (IMG, IMG))


def test_masked_form_equals_the_oracle_where_non_positives_share_positive_cells() -> None:
    # Coarse candidates crowd the same cells; those not taken must not take the cell's objectness label.
    gen = torch.Generator().manual_seed(42)
    head = FakeHead(p6=True, nc=3)
    maps = random_maps(head, 2, IMG, gen, aux=True)
    targets = random_targets([30, 12], head.nc, gen, "crowded")
    hyp = load_hyp("p6") | {"gr": 0.7}
    loss_fn = build_loss(head, hyp, img_size=IMG)
    loss_fn.compact_on_host = False  # the accelerator form
    _check_against_oracle(head, hyp, maps, targets, (IMG, IMG), loss_fn)


def test_rectangular_maps_with_and_without_images_equal_the_oracle() -> None:
    # Without images the pixel size is the first grid times its stride, height and width each its own.
    gen = torch.Generator().manual_seed(43)
    head = FakeHead(nc=4)
    maps = random_maps(head, 2, IMG, gen, img_h=96)
    targets = random_targets([8, 6], head.nc, gen, "mixed")
    hyp = load_hyp("p5")
    loss_fn = build_loss(head, hyp, img_size=IMG)
    # An image a little shorter than the grids cover (same grids), then none: (90, 128), then (96, 128).
    _check_against_oracle(head, hyp, maps, targets, (90, IMG), loss_fn, torch.zeros(2, 3, 90, IMG))
    _check_against_oracle(head, hyp, maps, targets, (96, IMG), loss_fn)


def test_a_loss_reused_across_heads_and_dtypes_equals_fresh_ones() -> None:
    gen = torch.Generator().manual_seed(44)
    head = FakeHead(p6=True, nc=5)
    maps = random_maps(head, 2, IMG, gen, aux=True)
    targets = random_targets([5, 7], head.nc, gen, "mixed")
    hyp = load_hyp("p6")
    reused = build_loss(head, hyp, img_size=IMG)
    calls = [(maps, targets), (maps[:4], targets), ([m.float() for m in maps[:4]], targets.float())]
    for preds, tg in calls:  # with auxiliary maps, lead maps only, then float32 maps
        got = reused(preds, tg)[1]
        want = build_loss(head, hyp, img_size=IMG)(preds, tg)[1]
        assert got.dtype == preds[0].dtype
        torch.testing.assert_close(got, want, rtol=1e-12, atol=0)


def test_distributed_shares_sum_to_the_one_process_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two replicas of one image each, the all-reduce simulated: their losses add up to the loss of one
    process with both images (the invariant `distribute` keeps), also for a level whose only positive
    lies in one share, and each replica's terms still count its own positives."""
    # One anchor per level, 8 times the last one: a box fits one level only (anchor_t 4); centres at
    # cell centres have one fine candidate each.
    head = FakeHead(nc=3, anchors_px=[[8, 8], [64, 64], [512, 512]])
    gen = torch.Generator().manual_seed(45)
    maps = random_maps(head, 2, IMG, gen)
    targets = torch.tensor(
        [
            [0, 1, 4.5 / 16, 9.5 / 16, 1 / 16, 1 / 16],  # image 0: the only level-0 positive
            [1, 2, 2.5 / 8, 3.5 / 8, 4 / 16, 4 / 16],  # image 1: level 1
            [1, 0, 5.3 / 8, 2.2 / 8, 5 / 16, 3 / 16],
        ],
        dtype=torch.float64,
    )
    hyp = load_hyp("p5")
    whole_loss, whole_items = build_loss(head, hyp, img_size=IMG)(maps, targets)

    def local_counts(preds, tg):
        single = build_loss(head, hyp, img_size=IMG)
        heads, _ = single.labelled_heads(preds, tg)
        return torch.cat([t.n_pos for t in single.heads_terms(heads, tg)])

    shares = []
    for image in (0, 1):
        tg = targets[targets[:, 0] == image].clone()
        tg[:, 0] = 0
        shares.append(([m[image : image + 1] for m in maps], tg))
    counts = [local_counts(*share) for share in shares]
    assert counts[0].tolist() == [1, 0, 0] and counts[1][0] == 0
    total, items = 0.0, 0.0
    for r, (preds, tg) in enumerate(shares):
        monkeypatch.setattr(torch.distributed, "all_reduce", lambda t, c=counts[1 - r]: t.add_(c))
        loss_fn = build_loss(head, hyp, img_size=IMG)
        loss_fn.distribute(2)
        value, its = loss_fn(preds, tg)
        total, items = total + value, items + its
        heads, _ = loss_fn.labelled_heads(preds, tg)
        torch.testing.assert_close(torch.cat([t.n_pos for t in loss_fn.heads_terms(heads, tg)]), counts[r])
    torch.testing.assert_close(total, whole_loss, rtol=1e-12, atol=0)
    torch.testing.assert_close(items / 2, whole_items, rtol=1e-12, atol=0)


def test_many_empty_images_and_one_small_object_equal_the_oracle() -> None:
    # More (candidate set, image) rows in SimOTA's tables than targets or candidates.
    gen = torch.Generator().manual_seed(46)
    head = FakeHead(p6=True, nc=3)
    maps = random_maps(head, 16, IMG, gen, aux=True)
    targets = torch.tensor([[9, 2, 0.4, 0.6, 10 / IMG, 12 / IMG]], dtype=torch.float64)
    loss_fn = build_loss(head, load_hyp("p6"), img_size=IMG)
    lead, aux = loss_fn.assign(maps, targets)
    ocfg = oracle_config(load_hyp("p6"), head.nl, head.nc, IMG, True)
    o_lead, o_aux = oracle_assign(ocfg, head, maps, targets, (IMG, IMG))
    assert positive_rows(lead) == o_lead.levels and positive_rows(aux) == o_aux.levels
    assert sum(map(len, o_aux.levels)) >= 1


def test_half_maps_with_confident_scores_match_in_float32() -> None:
    # float16 sigmoids of confident logits round to 1 (log(1 - y) = -inf): SimOTA must work in float32.
    gen = torch.Generator().manual_seed(3)
    head = FakeHead(nc=5)
    maps = random_maps(head, 2, IMG, gen, scale=6.0)
    targets = random_targets([8, 8], head.nc, gen, "mixed").float()
    half = [m.half() for m in maps]
    loss_fn = build_loss(head, load_hyp("p5"), img_size=IMG)
    got, _ = loss_fn.assign(half, targets)
    o_lead, _ = oracle_assign(OracleConfig(), head, [m.double() for m in half], targets.double(), (IMG, IMG))
    assert positive_rows(got) == o_lead.levels and sum(map(len, o_lead.levels)) > 5


@pytest.mark.parametrize("bias", [FINE_BIAS, COARSE_BIAS])
def test_centres_on_grid_lines_and_half_cells_equal_the_oracle(bias: float) -> None:
    # Centres at multiples of 1/32 of the image: on cell borders, on half cells, exactly one cell from
    # the border. The reference's tests are strict there (fraction < bias, distance > 1).
    gen = torch.Generator().manual_seed(47)
    head = FakeHead(nc=3)
    grids = [(IMG // int(s), IMG // int(s)) for s in head.stride]
    targets = random_targets([12, 12], head.nc, gen, "mixed")
    targets[:, 2:4] = torch.randint(0, 33, (24, 2), generator=gen).double() / 32
    targets[:2, 2:4] = torch.tensor([[1 / 16, 1 / 16], [15 / 16, 3 / 32]])  # one cell from the border
    cand = find_candidates(targets, grids, head.anchors, 4.0, bias, batch=2)
    assert candidate_rows(cand) == oracle_candidates(targets, grids, head.anchors, 4.0, bias)


@pytest.mark.parametrize("constrained", [True, False])
def test_decoder_pieces_follow_the_definitions(constrained: bool) -> None:
    # Offsets 2 s - 0.5 in (-0.5, 1.5) (constrained) or 3 s - 1 in (-1, 2); sizes (2 s)^2 anchors.
    raw = torch.tensor([[-30.0, 30.0, 0.0, -1.0, 5.0], [0.0, 1.0, 30.0, 2.0, 0.0]], dtype=torch.float64)
    anchor = torch.tensor([[1.5, 2.0], [3.0, 0.5]], dtype=torch.float64)
    s = 1 / (1 + torch.exp(-raw[:, :4]))
    lo, span = (-0.5, 2.0) if constrained else (-1.0, 3.0)
    want_xy, want_wh = lo + span * s[:, :2], 4 * s[:, 2:] ** 2 * anchor
    xy, wh = decode_box(raw, anchor, constrained)
    torch.testing.assert_close(xy, want_xy, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(wh, want_wh, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(decode_xy(raw[:, :2], constrained), want_xy, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(decode_wh(raw[:, 2:4], anchor), want_wh, rtol=1e-12, atol=1e-12)
    assert xy[0, 0] == pytest.approx(lo) and xy[0, 1] == pytest.approx(lo + span)


def test_half_maps_with_non_dyadic_anchors_and_odd_grids_give_the_float32_loss() -> None:
    # Neither k-means anchors nor cell counts above 2048 are float16 numbers: the loss terms must use
    # float32 tables (27 x 27 cells x 3 anchors x 2 images = 4374 at the first level).
    gen = torch.Generator().manual_seed(48)
    anchors_px = [[12.3, 16.7, 19.1, 36.3, 40.7, 28.9], [36.1, 75.3, 76.9, 55.1, 72.2, 146.3]]
    anchors_px.append([142.7, 110.1, 192.3, 243.9, 459.5, 401.1])
    head = FakeHead(nc=4, anchors_px=anchors_px)
    half = [m.half() for m in random_maps(head, 2, 216, gen)]
    targets = random_targets([6, 9], head.nc, gen, "mixed").float()
    got = build_loss(head, load_hyp("p5"), img_size=IMG)(half, targets)[1]
    want = build_loss(head, load_hyp("p5"), img_size=IMG)([m.float() for m in half], targets)[1]
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0)


def test_simota_with_tiny_predicted_boxes_equals_the_oracle() -> None:
    # Predicted boxes of about a tenth of a pixel inside large targets: IoUs near 1e-6, where the
    # cost's -log(IoU + 1e-8) (the reference's epsilon) orders the candidates.
    gen = torch.Generator().manual_seed(0)
    head = FakeHead(nc=3)
    maps = random_maps(head, 2, IMG, gen)
    for m in maps:
        m[..., 2:4] = m[..., 2:4] * 0.3 - 4.5
    targets = random_targets([6, 6], head.nc, gen, "huge")
    lead, _ = build_loss(head, load_hyp("p5"), img_size=IMG).assign(maps, targets)
    o_lead, _ = oracle_assign(OracleConfig(), head, maps, targets, (IMG, IMG))
    assert positive_rows(lead) == o_lead.levels
