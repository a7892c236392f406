"""Model building details: raw maps, anchor order, width and `from` rules, official checkpoints.

The channel layout of the raw maps and the order of lead and auxiliary outputs (written out by hand),
the reference's check_anchor_order (flip in pixels, then divide by the strides), the width rule for
``no``-wide layers, ``from`` validation and re-encoding when the auxiliary head is dropped, and the
official unpickler's whitelist.
"""

from __future__ import annotations

import collections
import copy
import math
import sys
import types
from pathlib import Path

import pytest
import torch
import yaml
from test_models_official import AUX_CFG, _randomise, _same_outputs, save_official
from torch import nn
from torch.nn import functional as F

from yolov7lib.models import create_model, load_official, reparameterize
from yolov7lib.models.graph import fuse_layers_
from yolov7lib.models.heads import Detect, IAuxDetect
from yolov7lib.models.official import UnsafeCheckpointError
from yolov7lib.models.spec import deploy_spec, load_cfg, resolve_from, spec_rows

P5_ANCHORS = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119]]


def _tiny_cfg(head: str = "Detect", anchors: object = P5_ANCHORS, **extra: object) -> dict[str, object]:
    """Two levels (strides 8 and 16); IAuxDetect reads two extra auxiliary convolutions."""
    rows = [[2, 1, "Conv", [8, 1, 1]], [3, 1, "Conv", [8, 1, 1]]]
    sources = [2, 3, 4, 5] if head == "IAuxDetect" else [2, 3]
    return {
        "nc": 2,
        "anchors": anchors,
        "backbone": [
            [-1, 1, "Conv", [8, 3, 2]],
            [-1, 1, "Conv", [8, 3, 2]],
            [-1, 1, "Conv", [8, 3, 2]],
            [-1, 1, "Conv", [8, 3, 2]],
        ],
        "head": [*(rows if head == "IAuxDetect" else []), [sources, 1, head, ["nc", "anchors"]]],
        **extra,
    }


@torch.no_grad()
def test_raw_map_channels_follow_the_reference_layout() -> None:
    """Channel ``a * no + k`` of a level's convolution is anchor ``a``, field ``k`` (as official weights)."""
    head = Detect(nc=2, anchors=[[10, 13, 16, 30]], ch=[4]).train()
    na, no = head.na, head.no
    head.m[0].weight.zero_()
    head.m[0].bias.copy_(torch.arange(na * no, dtype=torch.float32))
    (maps,) = head([torch.randn(1, 4, 3, 5)])
    assert maps.shape == (1, na, 3, 5, no)
    for a in range(na):
        for k in range(no):
            assert torch.all(maps[0, a, :, :, k] == a * no + k), (a, k)


@torch.no_grad()
def test_auxiliary_head_returns_lead_maps_then_auxiliary_maps_computed_by_hand() -> None:
    torch.manual_seed(0)
    head = IAuxDetect(nc=1, anchors=P5_ANCHORS, ch=[4, 4, 4, 4])
    x = [torch.randn(2, 4, 8, 8), torch.randn(2, 4, 4, 4), torch.randn(2, 4, 8, 8), torch.randn(2, 4, 4, 4)]

    def maps(y: torch.Tensor) -> torch.Tensor:
        b, _, h, w = y.shape
        return y.view(b, head.na, head.no, h, w).permute(0, 1, 3, 4, 2)

    lead = [
        maps(head.im[i].implicit * F.conv2d(x[i] + head.ia[i].implicit, head.m[i].weight, head.m[i].bias))
        for i in range(2)
    ]
    aux = [maps(F.conv2d(x[2 + i], head.m2[i].weight, head.m2[i].bias)) for i in range(2)]
    out = head.train()(x)
    assert len(out) == 4
    for got, want in zip(out, lead + aux, strict=True):
        torch.testing.assert_close(got, want)
    _, raw = head.eval()(x)
    for got, want in zip(raw, lead, strict=True):
        torch.testing.assert_close(got, want)


def test_a_head_given_an_anchor_count_has_one_level_per_lead_input() -> None:
    """``anchors: 3`` (a count instead of sizes): IAuxDetect's 4 inputs are 2 lead and 2 auxiliary levels."""
    cfg = _tiny_cfg("IAuxDetect", anchors=3)
    model = create_model(cfg)
    head = model.head
    assert (head.nl, head.na, len(head.m), len(head.m2)) == (2, 3, 2, 2)
    assert head.stride.tolist() == [8.0, 16.0]
    maps = model.train()(torch.rand(1, 3, 64, 64))
    assert [tuple(m.shape) for m in maps] == [(1, 3, 8, 8, 7), (1, 3, 4, 4, 7)] * 2
    deploy, _ = deploy_spec(cfg)
    rows = spec_rows(deploy)
    assert rows[-1][2] == "Detect" and resolve_from(rows[-1][0], len(rows) - 1) == [2, 3]


@torch.no_grad()
def test_anchors_listed_large_to_small_are_flipped_in_pixels() -> None:
    """As the reference's check_anchor_order: the smallest anchors go to the finest level."""
    head = create_model(_tiny_cfg(anchors=P5_ANCHORS[::-1])).head
    assert head.stride.tolist() == [8.0, 16.0]
    assert head.anchor_grid.view(2, -1).tolist() == P5_ANCHORS


@torch.no_grad()
def test_flipped_anchors_in_grid_units_are_the_pixel_anchors_over_their_own_stride() -> None:
    """The loss reads the anchors in grid units: each level's pixel anchors over that level's stride."""
    head = create_model(_tiny_cfg(anchors=P5_ANCHORS[::-1])).head
    expected = (
        torch.tensor(P5_ANCHORS, dtype=torch.float32).view(2, 3, 2) / torch.tensor([8.0, 16.0])[:, None, None]
    )
    torch.testing.assert_close(head.anchors, expected)


@torch.no_grad()
def test_anchors_whose_first_and_last_areas_are_equal_are_flipped_as_the_reference_does() -> None:
    """check_anchor_order flips when sign(last area - first area) != sign(last stride - first stride):
    equal areas (sign 0) against increasing strides flip the levels too."""
    anchors = [[10, 20, 40, 40, 30, 30], [12, 12, 50, 50, 20, 10]]  # first and last areas: 200 and 200
    head = create_model(_tiny_cfg(anchors=anchors)).head
    assert head.anchor_grid.view(2, -1).tolist() == anchors[::-1]
    expected = torch.tensor(anchors[::-1], dtype=torch.float32).view(2, 3, 2)
    torch.testing.assert_close(head.anchors, expected / torch.tensor([8.0, 16.0])[:, None, None])


def test_auxiliary_convolutions_get_the_objectness_and_class_priors() -> None:
    torch.manual_seed(0)
    head = create_model(AUX_CFG).head
    assert isinstance(head, IAuxDetect)
    for convs in (head.m, head.m2):
        for conv, s in zip(convs, head.stride.tolist(), strict=True):
            bound = 1 / math.sqrt(conv.in_channels)  # default bias init is uniform(-bound, bound)
            b = conv.bias.view(head.na, head.no)
            assert (b[:, 4] - math.log(8 / (640 / s) ** 2)).abs().max() <= bound
            assert (b[:, 5:] - math.log(0.6 / (head.nc - 0.99))).abs().max() <= bound


def test_a_layer_as_wide_as_the_detection_outputs_is_not_width_scaled() -> None:
    """Reference rule: ``c2 = make_divisible(c2 * width_multiple, 8)`` unless ``c2 == no``."""
    cfg = _tiny_cfg(width_multiple=0.5)
    cfg["backbone"][1] = [-1, 1, "Conv", [21, 3, 2]]  # no = 3 anchors * (2 + 5) = 21: kept
    cfg["backbone"][2] = [-1, 1, "Conv", [20, 3, 2]]  # 20 * 0.5 = 10, rounded up to 16
    model = create_model(cfg)
    assert model.model[1].conv.out_channels == 21 and model.model[2].conv.out_channels == 16
    assert model.model[0].conv.out_channels == 8  # 8 * 0.5 = 4 -> 8


def test_the_input_channel_count_reaches_the_first_layer() -> None:
    model = create_model(_tiny_cfg(), ch=1)
    assert model.model[0].conv.in_channels == 1
    maps = model.train()(torch.rand(1, 1, 32, 32))
    assert [tuple(m.shape) for m in maps] == [(1, 3, 4, 4, 7), (1, 3, 2, 2, 7)]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ((1, [-3, 1, "Conv", [8, 3, 2]]), r"layer 1 reads from -3, which is not an earlier layer"),
        ((4, [[2, 3], 1, "Concat", [1]]), r"the last layer must be one of Detect, IDetect, IAuxDetect"),
    ],
)
def test_load_cfg_refuses_offsets_before_the_input_and_a_headless_graph(
    tmp_path: Path, edit: tuple[int, list[object]], message: str
) -> None:
    cfg = _tiny_cfg()
    rows = spec_rows(cfg)
    rows[edit[0]] = edit[1]
    cfg["backbone"], cfg["head"] = rows[:4], rows[4:]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError, match=message):
        load_cfg(path)


@torch.no_grad()
def test_dropping_the_auxiliary_head_rewires_relative_offsets_that_spanned_it() -> None:
    """Row 5 reads ``-3`` (layer 2) across the auxiliary conv at 4; once 4 is gone the offset must change."""
    cfg = copy.deepcopy(AUX_CFG)
    cfg["head"] = [
        [2, 1, "Conv", [8, 3, 1]],  # 4: auxiliary, level 0
        [-3, 1, "Conv", [16, 3, 1]],  # 5: lead, level 0 (reads 2)
        [3, 1, "Conv", [8, 3, 1]],  # 6: auxiliary, level 1
        [-4, 1, "Conv", [16, 3, 1]],  # 7: lead, level 1 (reads 3)
        [[5, 7, 4, 6], 1, "IAuxDetect", ["nc", "anchors"]],
    ]
    new_cfg, index_map = deploy_spec(cfg)
    old_rows, new_rows = spec_rows(cfg), spec_rows(new_cfg)
    assert index_map == {0: 0, 1: 1, 2: 2, 3: 3, 5: 4, 7: 5, 8: 6}
    for old_i, new_i in index_map.items():
        old_sources = resolve_from(old_rows[old_i][0], old_i)
        if old_i == 8:
            old_sources = old_sources[:2]
        expected = [index_map[j] if j >= 0 else j for j in old_sources]  # -1 at layer 0: the input
        assert resolve_from(new_rows[new_i][0], new_i) == expected, (old_i, new_rows[new_i])
    torch.manual_seed(0)
    model = _randomise(create_model(cfg), 5).eval()
    x = torch.rand(1, 3, 64, 64)
    decoded, _ = model(x)
    torch.testing.assert_close(reparameterize(model)(x)[0], decoded, rtol=1e-4, atol=1e-3)


def test_a_checkpoint_saved_after_fusing_its_implicit_head_is_refused(tmp_path: Path) -> None:
    model = _randomise(create_model(AUX_CFG), 6).eval()
    fused = fuse_layers_(copy.deepcopy(model))
    path = save_official(tmp_path / "fused.pt", fused)
    with pytest.raises(ValueError, match=r"saved after Model\.fuse\(\)"):
        load_official(path)


@torch.no_grad()
def test_official_batchnorm_settings_and_pixel_anchors_survive_loading(tmp_path: Path) -> None:
    """A checkpoint whose BatchNorms keep torch's defaults (eps 1e-5, momentum 0.1) loads with them; the
    loaded cfg lists the anchors in pixels, as the checkpoint's yaml does."""
    torch.manual_seed(0)
    model = _randomise(create_model(AUX_CFG), 7).eval()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.eps, bn.momentum = 1e-5, 0.1
        bn.running_var.mul_(1e-3)  # small variances: eps 1e-3 instead of 1e-5 would change the outputs
    loaded = load_official(save_official(tmp_path / "bn.pt", model))
    loaded_bns = [m for m in loaded.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(loaded_bns) == len(bns) and all(m.eps == 1e-5 and m.momentum == 0.1 for m in loaded_bns)
    _same_outputs(model, loaded)
    assert loaded.cfg["anchors"] == AUX_CFG["anchors"]
    rebuilt = create_model(loaded.cfg)
    assert torch.equal(rebuilt.head.anchor_grid, loaded.head.anchor_grid)


class _Reduce:
    def __init__(self, func: object, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.func, self.args


def test_getattr_and_torch_functions_are_refused(tmp_path: Path) -> None:
    """``builtins.getattr`` is the classic escape from a pickle whitelist; of the ``torch`` namespace only
    dtypes are needed. Nothing may run: the default dtype stays float32."""
    path = tmp_path / "getattr.pt"
    torch.save({"model": _Reduce(getattr, collections.OrderedDict, "fromkeys")}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"builtins\.getattr.*Model\.fuse\(\)"):
        load_official(path)

    assert torch.set_default_dtype.__module__ == "torch"  # pickled as the global torch.set_default_dtype
    torch.save({"model": _Reduce(torch.set_default_dtype, torch.float64)}, path)
    try:
        with pytest.raises(UnsafeCheckpointError, match=r"torch\.set_default_dtype"):
            load_official(path)
        assert torch.get_default_dtype() == torch.float32
    finally:
        torch.set_default_dtype(torch.float32)


def test_a_class_from_another_models_module_is_refused(tmp_path: Path, monkeypatch) -> None:
    """Only models.yolo / models.common / models.experimental classes become stand-ins."""
    package, module = types.ModuleType("models"), types.ModuleType("models.evil")
    payload = type("Payload", (), {"__module__": "models.evil", "__qualname__": "Payload"})
    package.evil, module.Payload = module, payload
    with monkeypatch.context() as mp:
        mp.setitem(sys.modules, "models", package)
        mp.setitem(sys.modules, "models.evil", module)
        path = tmp_path / "other.pt"
        torch.save({"model": payload()}, path)
    assert "models" not in sys.modules
    with pytest.raises(UnsafeCheckpointError, match=r"models\.evil\.Payload"):
        load_official(path)
