"""yolov7lib.models: every architecture exactly, re-parameterization, cfg files, `yolov7 info`.

The parameter counts and GFLOPs are the spec (official-figures.md, measured from the official
implementation). Parameter counts and FLOPs are computed on the meta device (no memory, no arithmetic);
equivalence tests use real random weights with randomised BatchNorm statistics and small inputs.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from yolov7lib.cli import main
from yolov7lib.models import (
    Model,
    count_params,
    create_model,
    dump_cfg,
    list_models,
    load_cfg,
    model_info,
    model_spec,
    randomize_batchnorm,
    register_model,
    reparameterize,
)
from yolov7lib.models.heads import Detect, IAuxDetect, IDetect
from yolov7lib.models.info import model_flops
from yolov7lib.models.layers import Conv, RepConv, RepConvN, fuse_conv_bn
from yolov7lib.models.spec import resolve_from, spec_rows
from yolov7lib.paper import OFFICIAL_COUNTS

# official-figures.md, transcribed once in yolov7lib.paper: training graph, training graph fused, deploy
# graph, deploy graph fused, GFLOPs, input size
OFFICIAL = {
    name: (c.training_params, c.training_fused, c.deploy_params, c.deploy_fused, c.gflops, c.size)
    for name, c in OFFICIAL_COUNTS.items()
    if name.startswith("yolov7")
}
# official cfg/baseline: params, fused (the four without a paper row are listed here only)
BASELINES = {
    **{
        n: (c.deploy_params, c.deploy_fused) for n, c in OFFICIAL_COUNTS.items() if not n.startswith("yolov7")
    },
    "yolov3": (61_949_149, 61_922_845),
    "yolov3-spp": (62_998_749, 62_971_933),
    "r50-csp": (34_299_578, 34_270_138),
    "x50-csp": (32_299_962, 32_264_442),
}
# Every other registered model (no official cfg): training graph, fused deploy graph, counted here when
# it was added. Their deploy graphs are also checked against their base (test_models_ablations.py) or
# the paper's Table 3 (test_models_scaling.py). A new registry name needs its counts in one of these
# three dicts (test_every_registered_model_has_a_reference_parameter_count).
KIT_COUNTS = {
    "yolov7-tiny-cpu": (1_619_594, 1_614_685),
    "yolov7x-light": (47_073_178, 47_045_245),
    "yolov7x-light-depth2.0": (69_321_114, 69_285_757),
    "yolov7x-light-width1.25": (73_391_490, 73_356_765),
    "yolov7x-fig6a": (74_758_850, 71_311_741),
    "yolov7x-fig6b": (73_053_122, 71_311_741),
    "yolov7x-fig6c": (73_041_986, 71_311_741),
    "yolov7x-fig6d": (73_053_122, 71_311_741),
    "yolov7x-fig6e": (74_736_578, 71_311_741),
    "yolor-csp-reprcsp": (54_657_114, 52_889_053),
    "yolor-w6-rcsp": (79_873_400, 79_824_444),
    "yolor-w6-repcsp": (81_710_200, 79_824_444),
    "yolor-w6-reprcsp": (81_710_200, 79_824_444),
    "yolov7-e6-noaux": (97_250_872, 97_202_940),
    "yolov7-e6e-aux": (166_408_884, 151_687_420),
    "yolov7-e6e-noaux": (151_761_464, 151_687_420),
}
ALL = [*OFFICIAL, *BASELINES]
HEAVY = {"yolov7x", "yolov7-w6", "yolov7-e6", "yolov7-d6", "yolov7-e6e", "yolor-csp-x", "yolor-w6"}
HEAVY |= {"yolor-e6", "yolor-d6", "yolov3", "yolov3-spp"}  # > 60M parameters: slow on 2 cores
HEAVY |= {"yolov4-csp", "r50-csp", "yolov7-tiny-silu"}  # same blocks as yolor-csp, x50-csp, yolov7-tiny
HEAVY |= {n for n, (params, _) in KIT_COUNTS.items() if params > 60_000_000}


def _slow_if_heavy(names: list[str]) -> list[object]:
    return [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in names]


@functools.cache
def meta_model(name: str) -> nn.Module:
    """Training graph on the meta device (shapes only), built once per session."""
    with torch.device("meta"):
        return create_model(name)


def four_counts(model: nn.Module) -> tuple[int, int, int, int]:
    return (
        count_params(model),
        count_params(reparameterize(model, drop_aux=False, fold_implicit=False)),
        count_params(reparameterize(model, fuse=False)),
        count_params(reparameterize(model)),
    )


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_parameter_counts_equal_the_official_figures(name: str) -> None:
    model = meta_model(name)
    expected = OFFICIAL[name][:4]
    got = four_counts(model)
    assert all(e is None or g == e for g, e in zip(got, expected, strict=True)), (got, expected)
    with torch.device("meta"):
        assert count_params(create_model(name, deploy=True)) == expected[3]


@pytest.mark.parametrize("name", list(BASELINES))
def test_baseline_parameter_counts_equal_the_official_figures(name: str) -> None:
    model = meta_model(name)
    fused = reparameterize(model, drop_aux=False, fold_implicit=False)
    assert (count_params(model), count_params(fused)) == BASELINES[name]


def test_every_registered_model_has_a_reference_parameter_count() -> None:
    missing = sorted(set(list_models()) - {*ALL, *KIT_COUNTS})
    assert not missing, f"registered without parameter counts in tests/test_models.py: {missing}"
    assert not {*ALL, *KIT_COUNTS} - set(list_models()), "counts of models no longer registered"


@pytest.mark.parametrize("name", _slow_if_heavy(list(KIT_COUNTS)))
def test_kit_model_parameter_counts(name: str) -> None:
    with torch.device("meta"):
        deploy = create_model(name, deploy=True)
    assert (count_params(meta_model(name)), count_params(deploy)) == KIT_COUNTS[name]
    assert count_params(reparameterize(meta_model(name))) == KIT_COUNTS[name][1]


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_gflops_of_the_fused_deploy_graph_within_half_a_percent(name: str) -> None:
    gflops, size = OFFICIAL[name][4:]
    with torch.device("meta"):
        deploy = create_model(name, deploy=True)
    assert model_flops(deploy, size) / 1e9 == pytest.approx(gflops, rel=5e-3)


def test_model_info_counts_convolution_flops_like_a_hand_count() -> None:
    cfg = {
        "nc": 1,
        "anchors": [[10, 13, 16, 30, 33, 23]],
        "backbone": [[-1, 1, "Conv", [8, 3, 2]], [-1, 1, "Conv", [16, 1, 1]]],
        "head": [[[1], 1, "Detect", ["nc", "anchors"]]],
    }
    model = create_model(cfg)
    info = model_info(model, 64)
    macs = 32 * 32 * 8 * 3 * 3 * 3 + 32 * 32 * 16 * 8 + 32 * 32 * 18 * 16  # conv, conv, detection conv
    assert info.gflops == pytest.approx(2 * macs / 1e9)
    assert info.params == sum(p.numel() for p in model.parameters())


def test_model_info_on_a_rectangular_image_and_a_plain_module() -> None:
    """(height, width) is kept as given and the FLOPs are those of that image; `ch` feeds a module
    without a cfg; the model comes back in the mode it was in."""
    cfg = {
        "nc": 1,
        "anchors": [[10, 13, 16, 30, 33, 23]],
        "backbone": [[-1, 1, "Conv", [8, 3, 2]], [-1, 1, "Conv", [16, 1, 1]]],
        "head": [[[1], 1, "Detect", ["nc", "anchors"]]],
    }
    model = create_model(cfg).train()
    info = model_info(model, (64, 96))
    macs = 32 * 48 * (8 * 3 * 3 * 3 + 16 * 8 + 18 * 16)  # on the 32 x 48 map: conv, conv, detection conv
    assert info.img_size == (64, 96) and info.gflops == pytest.approx(2 * macs / 1e9)
    assert model.training
    model.eval()
    model_flops(model, 64, train=True)
    assert not model.training
    assert model_flops(nn.Conv2d(5, 8, 1, bias=False), 4, ch=5) == 2 * 4 * 4 * 8 * 5


def test_describe_model_counts_the_fused_deploy_graph_and_the_training_graph() -> None:
    """GFLOPs of the fused deploy graph (RepConv as one 3x3, auxiliary head and the conv feeding only it
    dropped) and of the training graph in training mode (everything), hand-counted at 640 x 640."""
    from yolov7lib.models import describe_model
    from yolov7lib.models.info import native_img_size

    cfg = {
        "nc": 1,
        "anchors": [[10, 13, 16, 30, 33, 23]],
        "backbone": [
            [-1, 1, "Conv", [16, 3, 2]],
            [-1, 1, "RepConv", [16, 3, 1]],
            [-1, 1, "Conv", [32, 3, 2]],
        ],
        "head": [[[1, 2], 1, "IAuxDetect", ["nc", "anchors"]]],
    }
    stem, rep3, rep1 = 320 * 320 * 16 * 3 * 9, 320 * 320 * 16 * 16 * 9, 320 * 320 * 16 * 16
    down, lead, aux = 160 * 160 * 32 * 16 * 9, 320 * 320 * 18 * 16, 160 * 160 * 18 * 32
    info = describe_model(cfg, 640)
    assert info["gflops"] == round(2 * (stem + rep3 + lead) / 1e9, 2) == 0.62
    assert info["training_gflops"] == round(2 * (stem + rep3 + rep1 + down + lead + aux) / 1e9, 2) == 0.94
    assert (
        native_img_size({"anchors": [[10, 13]] * 4}) == 1280
        and native_img_size({"anchors": [[10, 13]] * 3}) == 640
    )
    assert native_img_size({"anchors": 3}) == 640


def test_training_flops_count_a_p6_model_whose_last_map_is_one_cell() -> None:
    """Before: `yolov7 info --model yolov7-w6 --img 64` stopped with BatchNorm's "Expected more than 1 value
    per channel when training" (the training graph's count ran one image with a 1 x 1 last map). Every map
    at 128 px is exactly four times the one at 64 px, and so are the FLOPs."""
    from yolov7lib.models import create_model

    with torch.device("meta"):
        model = create_model("yolov7-w6")
    assert model_flops(model, 64, train=True) * 4 == model_flops(model, 128, train=True) > 0
    assert model_flops(model, 64) * 4 == model_flops(model, 128)


def test_describe_model_gives_the_layer_indices_that_freeze_takes() -> None:
    """Before: nothing in `yolov7 info` said how many layers a model has or where its backbone ends, which
    `yolov7 train --freeze N` needs. The official yolov7.yaml's backbone is layers 0-50 and its IDetect
    layer 105; yolov7-w6's IAuxDetect is layer 122."""
    from yolov7lib.models import create_model, describe_model
    from yolov7lib.models.info import format_description

    for name, count, backbone in (("yolov7", 106, 51), ("yolov7-w6", 123, 47)):
        info = describe_model(name)
        assert info["layers"] == {"count": count, "backbone": backbone}
        with torch.device("meta"):
            model = create_model(name)
        assert model.model[count - 1] is model.head
    text = format_description(describe_model("yolov7"))
    assert "layers                     106 (backbone 0-50, head 51-105: yolov7 train --freeze 51" in text


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / a.abs().max()).item()


@torch.no_grad()
@pytest.mark.parametrize("name", _slow_if_heavy(ALL))
def test_reparameterize_computes_the_same_function_and_loads_into_the_deploy_graph(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name)
    randomize_batchnorm(model)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    deploy = reparameterize(model)

    # the argument is unchanged: weights, structure, mode
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not model.training and any(isinstance(m, nn.BatchNorm2d) for m in model.modules())

    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    decoded, raw = model(x)
    decoded_d, raw_d = deploy(x)
    assert len(raw) == len(raw_d) == model.head.nl
    for a, b in zip(raw, raw_d, strict=True):
        assert _relative_error(a, b) < 1e-4
    assert _relative_error(decoded, decoded_d) < 1e-4

    # structurally the deploy graph: no BatchNorm, no implicit, no auxiliary head, plain Detect
    assert type(deploy.head) is Detect
    assert not any(isinstance(m, nn.BatchNorm2d) for m in deploy.modules())
    with torch.device("meta"):
        target = create_model(name, deploy=True)
    result = target.load_state_dict(deploy.state_dict(), strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert [type(m) for m in target.modules()] == [type(m) for m in deploy.modules()]


@torch.no_grad()
def test_partial_reparameterizations_keep_the_function() -> None:
    torch.manual_seed(0)
    model = create_model("yolov7-tiny")
    randomize_batchnorm(model, seed=3)
    model.eval()
    x = torch.rand(2, 3, 96, 96)
    reference = model(x)[1]
    fused_training = reparameterize(model, drop_aux=False, fold_implicit=False)
    unfused_deploy = reparameterize(model, fuse=False)
    assert type(fused_training.head) is IDetect and type(unfused_deploy.head) is Detect
    assert any(isinstance(m, nn.BatchNorm2d) for m in unfused_deploy.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused_training.modules())
    for variant in (fused_training, unfused_deploy, reparameterize(unfused_deploy)):
        for a, b in zip(reference, variant(x)[1], strict=True):
            assert _relative_error(a, b) < 1e-4
    with pytest.raises(ValueError, match="drop_aux"):
        reparameterize(meta_model("yolov7-w6"), drop_aux=False, fold_implicit=True)


@torch.no_grad()
def test_reparameterize_keeps_float64_precision() -> None:
    """The folded weights are loaded into a model of the source's dtype, not rounded through float32."""
    torch.manual_seed(0)
    model = create_model("yolov7-tiny")
    randomize_batchnorm(model, seed=2)
    model = model.eval().double()
    deploy = reparameterize(model)
    assert all(p.dtype == torch.float64 for p in deploy.parameters())
    assert not all(torch.equal(p, p.float().double()) for p in deploy.parameters())  # not float32 values
    x = torch.rand(1, 3, 64, 96, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert _relative_error(model(x)[0], deploy(x)[0]) < 1e-12


AUX_CFG = {  # a small two-level model with lead and auxiliary heads (the P6 models' head, cheaply)
    "nc": 4,
    "anchors": [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119]],
    "backbone": [
        [-1, 1, "Conv", [8, 3, 2]],
        [-1, 1, "Conv", [16, 3, 2]],
        [-1, 1, "Conv", [16, 3, 2]],
        [-1, 1, "Conv", [16, 3, 2]],
    ],
    "head": [
        [2, 1, "RepConv", [16, 3, 1]],
        [3, 1, "Conv", [16, 3, 1]],
        [2, 1, "Conv", [8, 3, 1]],
        [-2, 1, "Conv", [8, 3, 1]],
        [[4, 5, 6, 7], 1, "IAuxDetect", ["nc", "anchors"]],
    ],
}


@torch.no_grad()
def test_auxiliary_head_is_dropped_with_the_layers_that_only_feed_it() -> None:
    torch.manual_seed(0)
    model = create_model(AUX_CFG)
    randomize_batchnorm(model)
    model.eval()
    x = torch.rand(2, 3, 64, 64)
    decoded, raw = model(x)
    deploy = reparameterize(model)
    assert len(deploy.model) == len(model.model) - 2 and type(deploy.head) is Detect
    assert deploy.head.f == [4, 5] and deploy.head.i == 6
    decoded_d, raw_d = deploy(x)
    assert _relative_error(decoded, decoded_d) < 1e-4
    assert all(_relative_error(a, b) < 1e-4 for a, b in zip(raw, raw_d, strict=True))
    assert create_model(AUX_CFG, deploy=True).load_state_dict(deploy.state_dict(), strict=True)
    kept = reparameterize(model, drop_aux=False, fold_implicit=False)
    assert type(kept.head) is IAuxDetect and len(kept.train()(x)) == 4


@torch.no_grad()
@pytest.mark.parametrize("g", [1, 4])
def test_repconv_with_identity_branch_fuses_exactly(g: int) -> None:
    torch.manual_seed(0)
    c1 = c2 = 16
    layer = RepConv(c1, c2, 3, 1, g=g)
    assert layer.rbr_identity is not None
    randomize_batchnorm(layer)
    layer.eval()
    x = torch.randn(2, c1, 12, 12)
    expected = layer(x)
    assert _relative_error(expected, layer.fuse_()(x)) < 1e-5
    assert list(dict(layer.named_children())) == ["act", "rbr_reparam"]


@torch.no_grad()
@pytest.mark.parametrize(("c1", "c2", "s"), [(16, 16, 1), (8, 16, 1), (16, 16, 2)])
def test_repconvn_has_no_identity_and_fuses_exactly(c1: int, c2: int, s: int) -> None:
    torch.manual_seed(0)
    layer = RepConvN(c1, c2, 3, s)
    assert layer.rbr_identity is None
    assert (RepConv(c1, c2, 3, s).rbr_identity is None) == (c1 != c2 or s != 1)
    randomize_batchnorm(layer)
    layer.eval()
    x = torch.randn(2, c1, 12, 12)
    expected = layer(x)
    assert _relative_error(expected, layer.fuse_()(x)) < 1e-5


@torch.no_grad()
def test_forward_conventions_and_head_attributes() -> None:
    torch.manual_seed(0)
    model = create_model("yolov7-tiny", nc=3)
    head = model.head
    assert (head.nc, head.no, head.nl, head.na) == (3, 8, 3, 3)
    assert head.stride.tolist() == [8.0, 16.0, 32.0]
    assert torch.allclose(head.anchors * head.stride.view(-1, 1, 1), head.anchor_grid.view(3, 3, 2))
    x = torch.rand(2, 3, 64, 96)
    maps = model.train()(x)
    assert [tuple(m.shape) for m in maps] == [(2, 3, 64 // s, 96 // s, 8) for s in (8, 16, 32)]

    decoded, raw = model.eval()(x)
    assert decoded.shape == (2, sum(3 * (64 // s) * (96 // s) for s in (8, 16, 32)), 8)
    # decode again with a plain loop over cells and anchors
    rows = []
    for level, p in enumerate(raw):
        s = head.stride[level].item()
        for a in range(3):
            for gy in range(p.shape[2]):
                for gx in range(p.shape[3]):
                    v = p[0, a, gy, gx].sigmoid()
                    w, h = (
                        (2 * v[2]) ** 2 * head.anchor_grid[level, 0, a, 0, 0, 0],
                        (2 * v[3]) ** 2 * head.anchor_grid[level, 0, a, 0, 0, 1],
                    )
                    rows.append(
                        torch.stack([(2 * v[0] - 0.5 + gx) * s, (2 * v[1] - 0.5 + gy) * s, w, h, *v[4:]])
                    )
    assert torch.allclose(torch.stack(rows), decoded[0], atol=1e-4)


def test_auxiliary_head_outputs_follow_the_lead_outputs() -> None:
    model = meta_model("yolov7-w6")
    assert isinstance(model.head, IAuxDetect)
    x = torch.zeros(1, 3, 256, 256, device="meta")
    maps = model.train()(x)
    assert [tuple(m.shape) for m in maps] == [(1, 3, 256 // s, 256 // s, 85) for s in (8, 16, 32, 64)] * 2
    decoded, raw = model.eval()(x)
    assert len(raw) == 4 and decoded.shape == (1, 3 * sum((256 // s) ** 2 for s in (8, 16, 32, 64)), 85)


def test_e6e_uses_e_elan_and_a_partial_auxiliary_head() -> None:
    cfg = model_spec("yolov7-e6e")
    rows = spec_rows(cfg)
    groups = [g for g in cfg["groups"] if g["kind"] == "E-ELAN"]
    assert len(groups) == 5 + 6 and all(g["cardinality"] == 2 for g in groups)
    head = len(rows) - 1
    sources = resolve_from(rows[head][0], head)
    lead_convs, aux_convs = sources[:4], sources[4:]
    lead_inputs = [resolve_from(rows[j][0], j)[0] for j in lead_convs]
    aux_inputs = [resolve_from(rows[j][0], j)[0] for j in aux_convs]
    assert all(rows[j][2] == "Shortcut" for j in lead_inputs)  # lead head reads merged cardinality
    assert rows[aux_inputs[-1]][2] == "SPPCSPC"
    for j in aux_inputs[:3]:  # the others read one group's output, the layer just before its merge
        assert rows[j + 1][2] == "Shortcut" and j in resolve_from(rows[j + 1][0], j + 1)
    assert aux_inputs[0] + 1 == lead_inputs[0]


# rows of the official cfg/training files (yolov7lib writes absolute indices where they write offsets
# in a few places: only the rows below, which are written alike, are compared)
OFFICIAL_ROWS = {
    "yolov7": {  # a backbone ELAN (two 3x3 per stack), the MP transition, a neck ELAN and its MP + lateral
        10: [[-1, -3, -5, -6], 1, "Concat", [1]],
        12: [-1, 1, "MP", []],
        13: [-1, 1, "Conv", [128, 1, 1]],
        14: [-3, 1, "Conv", [128, 1, 1]],
        15: [-1, 1, "Conv", [128, 3, 2]],
        16: [[-1, -3], 1, "Concat", [1]],
        74: [[-1, -2, -3, -4, -5, -6], 1, "Concat", [1]],
        80: [[-1, -3, 63], 1, "Concat", [1]],
    },
    "yolov7-tiny": {  # the SPP-in-CSP block written as rows
        31: [-1, 1, "SP", [5]],
        32: [-2, 1, "SP", [9]],
        33: [-3, 1, "SP", [13]],
        34: [[-1, -2, -3, -4], 1, "Concat", [1]],
        36: [[-1, -7], 1, "Concat", [1]],
    },
    "yolov7-e6": {100: [-1, 1, "DownC", [320]], 101: [[-1, 85], 1, "Concat", [1]]},  # DownC, then lateral
    "yolov7-e6e": {  # the first E-ELAN: two groups on the same input, merged by a Shortcut
        4: [-2, 1, "Conv", [64, 1, 1]],
        11: [[-1, -3, -5, -7, -8], 1, "Concat", [1]],
        13: [-11, 1, "Conv", [64, 1, 1]],
        14: [-12, 1, "Conv", [64, 1, 1]],
        21: [[-1, -3, -5, -7, -8], 1, "Concat", [1]],
        23: [[-1, -11], 1, "Shortcut", [1]],
    },
}


@pytest.mark.parametrize("name", list(OFFICIAL_ROWS))
def test_blocks_read_their_inputs_in_the_official_order(name: str) -> None:
    """Concatenation order and sources of ELAN, E-ELAN, MP/DownC transitions and the tiny SPPCSPC; a
    different order keeps every parameter count but no longer takes the official weights."""
    rows = spec_rows(model_spec(name))
    assert {i: rows[i] for i in OFFICIAL_ROWS[name]} == OFFICIAL_ROWS[name]


def test_initialisation_follows_the_reference() -> None:
    torch.manual_seed(0)
    model = create_model("yolov7-tiny")
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.eps == 1e-3 and m.momentum == 0.03 for m in bns)
    acts = [m for m in model.modules() if isinstance(m, nn.LeakyReLU)]
    assert acts and all(m.inplace and m.negative_slope == 0.1 for m in acts)
    head = model.head
    ia = torch.cat([m.implicit.flatten() for m in head.ia])
    im = torch.cat([m.implicit.flatten() for m in head.im])
    assert abs(ia.mean()) < 0.01 and 0.015 < ia.std() < 0.025
    assert abs(im.mean() - 1) < 0.01 and 0.015 < im.std() < 0.025
    for conv, s in zip(head.m, head.stride.tolist(), strict=True):
        bound = 1 / math.sqrt(conv.in_channels)  # default bias init is uniform(-bound, bound)
        b = conv.bias.view(head.na, head.no)
        assert (b[:, 4] - math.log(8 / (640 / s) ** 2)).abs().max() <= bound
        assert (b[:, 5:] - math.log(0.6 / (head.nc - 0.99))).abs().max() <= bound


def test_unknown_name_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'yolov8'; valid names: .*yolov7-e6e.*yolov7x"):
        create_model("yolov8")
    assert {"yolov7", "yolov7-tiny", "yolov7-e6e", "yolor-csp", "yolov4-csp"} <= set(list_models())


def test_a_registered_name_is_never_replaced_silently(monkeypatch) -> None:
    """register_model refuses a taken name, the paper's included, even before the registry has loaded
    (the paper's models used to be registered lazily over a user's entry of the same name)."""
    from yolov7lib.models import registry

    tiny_spec = registry.model_spec("yolov7-tiny")  # read first: reading the registry loads it
    monkeypatch.setattr(registry, "_REGISTRY", {})  # a fresh process: nothing loaded yet
    monkeypatch.setattr(registry, "_LOADED", False)
    with pytest.raises(ValueError, match=r"'yolov7' is already registered .*overwrite=True"):
        register_model("yolov7", lambda nc: tiny_spec, 320, "mine")
    assert count_params(create_model("yolov7")) > 2 * count_params(create_model("yolov7-tiny"))
    register_model("my-net", lambda nc: tiny_spec, 320, "mine")
    with pytest.raises(ValueError, match="'my-net' is already registered"):
        register_model("my-net", lambda nc: tiny_spec, 416, "mine again")
    assert registry.get_entry("my-net").img_size == 320
    register_model("my-net", lambda nc: tiny_spec, 416, "mine again", overwrite=True)
    assert registry.get_entry("my-net").img_size == 416


def _signature(model: nn.Module) -> tuple[object, ...]:
    layers = [(m.type, tuple(resolve_from(m.f, m.i))) for m in model.model]
    return layers, {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", ["yolov7-tiny", "yolov7-e6e", "yolor-csp-x", "yolov3-spp", "x50-csp"])
def test_cfg_round_trip_gives_the_same_graph(name: str, tmp_path) -> None:
    model = meta_model(name)
    path = dump_cfg(model.cfg, tmp_path / f"{name}.yaml")
    assert load_cfg(path) == yaml.safe_load(yaml.safe_dump(model.cfg))
    with torch.device("meta"):
        again = create_model(path)
        deploy = create_model(path, deploy=True)
    assert _signature(again) == _signature(model)
    assert count_params(deploy) == count_params(reparameterize(model))
    with pytest.raises(FileExistsError):
        dump_cfg(model.cfg, path)


USER_CFG = """\
nc: 3
depth_multiple: 0.33
width_multiple: 0.5
anchors:
  - [10,13, 16,30, 33,23]
  - [30,61, 62,45, 59,119]
backbone:
  [[-1, 1, Conv, [32, 3, 2, None, 1, nn.LeakyReLU(0.1)]],
   [-1, 1, Conv, [64, 3, 2]],
   [-1, 3, BottleneckCSPC, [64]],
   [-1, 1, Conv, [128, 3, 2]],
  ]
head:
  [[-1, 1, SPPCSPC, [64]],
   [-1, 1, nn.Upsample, [None, 2, 'nearest']],
   [[-1, 2], 1, Concat, [1]],
   [-1, 1, RepConv, [64, 3, 1]],
   [4, 1, Conv, [128, 3, 1]],
   [[7, 8], 1, Detect, [nc, anchors]],
  ]
"""


def test_user_cfg_in_the_official_format(tmp_path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(USER_CFG)
    before = path.read_bytes()
    model = create_model(path)
    assert path.read_bytes() == before  # the user's file is never modified
    first = model.model[0]
    assert (
        first.conv.out_channels == 16
        and isinstance(first.act, nn.LeakyReLU)
        and first.act.negative_slope == 0.1
    )
    assert isinstance(model.model[1].act, nn.SiLU)
    assert len(model.model[2].m) == 1  # 3 repeats x depth 0.33
    assert model.model[7].rbr_1x1[0].in_channels == 32 + 32 and model.model[8].conv.out_channels == 64
    assert model.head.stride.tolist() == [4.0, 8.0] and model.head.no == 8
    maps = model.train()(torch.rand(1, 3, 64, 64))
    assert [tuple(m.shape) for m in maps] == [(1, 3, 16, 16, 8), (1, 3, 8, 8, 8)]
    assert create_model(path, nc=5).head.no == 10


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("Conv, [64, 3, 2]]", "Conf, [64, 3, 2]]"), "unknown module 'Conf'"),
        (("nn.LeakyReLU(0.1)", "nn.Evil(1)"), "unsupported activation"),
        (("nn.LeakyReLU(0.1)", "__import__('os').system('false')"), "layer 0"),
        (("[[7, 8], 1, Detect", "[[7, 9], 1, Detect"), "not an earlier layer"),
        (("nc: 3\n", ""), "missing key"),
    ],
)
def test_bad_cfg_gives_a_clear_error(tmp_path, edit: tuple[str, str], message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(USER_CFG.replace(*edit))
    with pytest.raises(ValueError, match=message):
        create_model(path)


@pytest.mark.parametrize("nc", [0, -1, 2.5, True, "3"])
def test_a_number_of_classes_that_is_not_a_positive_whole_number_is_refused(tmp_path, nc) -> None:
    """Before: nc=0 failed with 'math domain error' in the bias prior, nc=-1 with an IndexError, and
    nc=2.5 silently built a 2-class model."""
    with pytest.raises(ValueError, match="number of classes must be a whole number of at least 1"):
        create_model("yolov7-tiny", nc=nc)
    with pytest.raises(ValueError, match="number of classes"):
        Model(meta_model("yolov7-tiny").cfg, nc=nc)
    path = tmp_path / "bad_nc.yaml"
    path.write_text(USER_CFG.replace("nc: 3\n", yaml.safe_dump({"nc": nc})))
    with pytest.raises(ValueError, match=r"bad_nc.yaml: nc: the number of classes"):
        create_model(path)
    with torch.device("meta"):  # whole numbers of any integer or float type are taken
        assert create_model("yolov7-tiny", nc=np.int64(2)).head.nc == 2
        assert create_model("yolov7-tiny", nc=3.0).head.nc == 3


def test_create_model_of_a_models_own_cfg_keeps_its_input_channels(tmp_path) -> None:
    """`model.cfg` is enough to rebuild the model (CONTRIBUTING); before, create_model's ch=3 default
    replaced the spec's own ch: a 1-channel model came back with 3 channels and its weights did not load."""
    with torch.device("meta"):
        gray = create_model("yolov7-tiny", nc=2, ch=1)
        again = create_model(gray.cfg)
        from_file = create_model(dump_cfg(gray.cfg, tmp_path / "gray.yaml"), deploy=True)
        forced = create_model(gray.cfg, ch=3)
        plain = create_model("yolov7-tiny")
    assert gray.model[0].conv.in_channels == 1 and gray.cfg["ch"] == 1
    assert again.cfg["ch"] == 1 and _signature(again) == _signature(gray)
    assert from_file.model[0].conv.in_channels == 1
    assert forced.model[0].conv.in_channels == 3 and plain.model[0].conv.in_channels == 3


def test_missing_cfg_file() -> None:
    with pytest.raises(FileNotFoundError):
        create_model("no/such/model.yaml")


def test_a_checkpoint_given_as_the_cfg_is_named_as_such(tmp_path: Path, capsys) -> None:
    weights = tmp_path / "yolov7.pt"
    torch.save({"model": {"w": torch.zeros(3)}}, weights)  # a zip archive: not UTF-8 text
    with pytest.raises(ValueError, match=r"yolov7\.pt: not a UTF-8 text file, so not a model cfg"):
        create_model(weights)
    assert main(["info", "--model", str(weights)]) == 2
    assert "not a model cfg YAML" in capsys.readouterr().err


def test_info_command_prints_the_four_counts(capsys) -> None:
    assert main(["info", "--model", "yolov7-tiny", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert tuple(out["params"].values()) == OFFICIAL["yolov7-tiny"][:4]
    assert out["gflops"] == pytest.approx(13.7, rel=5e-3) and out["img_size"] == 640
    assert main(["info", "--model", "yolov7-tiny", "--img", "320"]) == 0
    text = capsys.readouterr().out
    assert "6,219,709" in text and "320x320" in text
    assert main(["info", "--model", "yolov9"]) == 2
    assert "valid names" in capsys.readouterr().err


def test_conv_fuse_keeps_the_function() -> None:
    torch.manual_seed(0)
    layer = Conv(6, 10, 3, 2, g=2)
    randomize_batchnorm(layer)
    layer.eval()
    x = torch.randn(2, 6, 9, 9)
    with torch.no_grad():
        expected = layer(x)
        assert _relative_error(expected, layer.fuse_()(x)) < 1e-5
    assert layer.bn is None and layer.conv.bias is not None


REPN_CFG = {  # one level with a RepConvN (no identity) and a RepConv (identity) before an IDetect
    "nc": 2,
    "anchors": [[10, 13, 16, 30, 33, 23]],
    "backbone": [
        [-1, 1, "Conv", [8, 3, 2]],
        [-1, 1, "RepConvN", [8, 3, 1]],
        [-1, 1, "RepConv", [8, 3, 1]],
    ],
    "head": [[[2], 1, "IDetect", ["nc", "anchors"]]],
}


def _eval_model(cfg: dict, seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    return randomize_batchnorm(create_model(cfg), seed=seed).to(dtype).eval()


@torch.no_grad()
def test_fuse_conv_bn_scales_the_convolutions_own_bias() -> None:
    """fuse_conv_bn(conv, bn) == bn(conv(x)) also for a convolution with a bias; bn=None keeps that bias."""
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=True).double()
    nn.init.normal_(conv.bias)
    bn = randomize_batchnorm(nn.BatchNorm2d(6, eps=0.1), seed=4).double().eval()
    x = torch.randn(2, 4, 7, 7, dtype=torch.float64)
    w, b = fuse_conv_bn(conv, bn)
    torch.testing.assert_close(nn.functional.conv2d(x, w, b, padding=1), bn(conv(x)), rtol=1e-12, atol=1e-12)
    w0, b0 = fuse_conv_bn(conv, None)
    assert torch.equal(w0, conv.weight) and torch.equal(b0, conv.bias)


@torch.no_grad()
@pytest.mark.parametrize("g", [1, 2])
def test_repconv_fusion_is_exact_in_float64_with_a_large_epsilon(g: int) -> None:
    """All three branches (3x3, 1x1, identity BN) divide by sqrt(var + eps): visible with eps = 0.1."""
    layer = RepConv(8, 8, 3, 1, g=g)
    assert layer.rbr_identity is not None
    randomize_batchnorm(layer, seed=5)
    for m in layer.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = 0.1
    layer = layer.double().eval()
    x = torch.randn(2, 8, 10, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    expected = layer(x)
    assert _relative_error(expected, layer.fuse_()(x)) < 1e-12


@torch.no_grad()
def test_reparameterize_fuses_repconvn_layers() -> None:
    model = _eval_model(REPN_CFG, seed=1)
    deploy = reparameterize(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in deploy.modules())
    assert type(deploy.head) is Detect
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    assert _relative_error(model(x)[0], deploy(x)[0]) < 1e-4
    assert create_model(REPN_CFG, deploy=True).load_state_dict(deploy.state_dict(), strict=True)


@torch.no_grad()
def test_unfused_deploy_graph_keeps_the_batchnorm_epsilon() -> None:
    """reparameterize(fuse=False) keeps the BatchNorms: with their own eps, not the default 1e-3."""
    model = _eval_model(REPN_CFG, seed=2, dtype=torch.float64)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = 0.25
    deploy = reparameterize(model, fuse=False)
    bns = [m for m in deploy.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.eps == 0.25 for m in bns)
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    assert _relative_error(model(x)[0], deploy(x)[0]) < 1e-12


@torch.no_grad()
def test_an_already_fused_model_drops_its_head_extras_without_fuse() -> None:
    """A fused training graph is fused whatever `fuse` says: its deploy graph is the fused one."""
    model = _eval_model(REPN_CFG, seed=3)
    fused_training = reparameterize(model, drop_aux=False, fold_implicit=False)
    deploy = reparameterize(fused_training, fuse=False)
    assert type(deploy.head) is Detect and not any(isinstance(m, nn.BatchNorm2d) for m in deploy.modules())
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    assert _relative_error(model(x)[0], deploy(x)[0]) < 1e-4


@torch.no_grad()
def test_reparameterize_leaves_the_argument_names_alone() -> None:
    model = _eval_model(REPN_CFG)
    model.names = ["cat", "dog"]
    deploy = reparameterize(model)
    deploy.names[0] = "renamed"
    deploy.names.append("extra")
    assert model.names == ["cat", "dog"]


def test_randomize_batchnorm_gives_non_trivial_reproducible_statistics() -> None:
    """The helper every fusion test relies on: no statistic is left at its fresh value."""
    a, b = (randomize_batchnorm(nn.BatchNorm2d(64), seed=7) for _ in range(2))
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert a.running_mean.abs().min() > 0 and a.running_mean.std() > 0.05
    assert (a.running_var != 1).all() and (a.running_var >= 0.5).all()
    assert (a.weight != 1).all() and (a.bias != 0).all()


# -- the dataflow of single layers, which parameter counts cannot see (concatenation order, residual
# additions, activations): each layer against its composition written out here from its submodules,
# in the order of the reference's forward methods --------------------------------------------------
def _pool(x: torch.Tensor, k: int) -> torch.Tensor:
    return nn.functional.max_pool2d(x, k, 1, k // 2)


def _cat(*xs: torch.Tensor) -> torch.Tensor:
    return torch.cat(xs, 1)


LAYER_DATAFLOW = {
    "Bottleneck": ((8, 8), lambda m, x: x + m.cv2(m.cv1(x))),
    "Bottleneck-widening": ((8, 16), lambda m, x: m.cv2(m.cv1(x))),  # no residual across widths
    "Res": ((8, 8), lambda m, x: x + m.cv3(m.cv2(m.cv1(x)))),
    "RBottleneck": ((8, 8), lambda m, x: x + m.cv2(m.cv1(x))),
    "BottleneckCSPA": ((8, 16, 2), lambda m, x: m.cv3(_cat(m.m(m.cv1(x)), m.cv2(x)))),
    "BottleneckCSPB": ((8, 16, 2), lambda m, x: m.cv3(_cat(m.m(m.cv1(x)), m.cv2(m.cv1(x))))),
    "BottleneckCSPC": ((8, 16, 2), lambda m, x: m.cv4(_cat(m.cv3(m.m(m.cv1(x))), m.cv2(x)))),
    "SPPCSPC": (
        (8, 16),
        lambda m, x: (
            lambda y: m.cv7(_cat(m.cv6(m.cv5(_cat(y, _pool(y, 5), _pool(y, 9), _pool(y, 13)))), m.cv2(x)))
        )(m.cv4(m.cv3(m.cv1(x)))),
    ),
    "SPP": (
        (8, 16),
        lambda m, x: (lambda y: m.cv2(_cat(y, _pool(y, 5), _pool(y, 9), _pool(y, 13))))(m.cv1(x)),
    ),
    "Stem": (
        (8, 16),
        lambda m, x: (lambda y: m.cv4(_cat(m.cv3(m.cv2(y)), nn.functional.max_pool2d(y, 2))))(m.cv1(x)),
    ),
    "DownC": ((8, 16), lambda m, x: _cat(m.cv2(m.cv1(x)), m.cv3(nn.functional.max_pool2d(x, 2)))),
}


@torch.no_grad()
@pytest.mark.parametrize("name", list(LAYER_DATAFLOW))
def test_layers_compute_the_reference_dataflow(name: str) -> None:
    """Concatenation order, residual additions and pools of the CSP, SPP, stem and DownC layers."""
    from yolov7lib.models import csp, layers

    args, expected = LAYER_DATAFLOW[name]
    cls_name = name.split("-")[0]
    torch.manual_seed(0)
    layer = getattr(csp, cls_name, None) or getattr(layers, cls_name)
    layer = randomize_batchnorm(layer(*args)).eval()
    x = torch.randn(2, args[0], 16, 16)
    torch.testing.assert_close(layer(x), expected(layer, x), rtol=0, atol=0)


def test_reorg_stacks_the_four_pixel_phases_in_the_reference_order() -> None:
    """Space to depth of a 4x4 ramp (pixel value = 4 * row + col): (even row, even col), (odd, even),
    (even, odd), (odd, odd), as the P6 models' first layer must be for official weights to apply."""
    from yolov7lib.models.layers import ReOrg

    x = torch.arange(16.0).view(1, 1, 4, 4)
    expected = [[[0, 2], [8, 10]], [[4, 6], [12, 14]], [[1, 3], [9, 11]], [[5, 7], [13, 15]]]
    assert ReOrg()(x).tolist() == [expected]


def test_same_padding_and_the_stride_of_sp_pools() -> None:
    """autopad is k // 2 (also for even kernels, as the reference); SP pools keep the size at stride 1 and
    halve it at stride 2."""
    from yolov7lib.models.layers import SP, autopad

    assert (autopad(3), autopad(2), autopad(4), autopad([1, 5]), autopad(3, 0)) == (1, 1, 2, [0, 2], 0)
    x = torch.randn(1, 2, 8, 8)
    assert SP(5)(x).shape == (1, 2, 8, 8) and SP(3, 2)(x).shape == (1, 2, 4, 4)


def test_shortcut_sums_every_input() -> None:
    """Merge cardinality adds all its inputs (1 + 10 + 100 in each element)."""
    from yolov7lib.models.layers import Shortcut

    out = Shortcut(1)([torch.full((1, 2, 3, 3), v) for v in (1.0, 10.0, 100.0)])
    assert torch.equal(out, torch.full((1, 2, 3, 3), 111.0))


@torch.no_grad()
def test_conv_activation_defaults_to_silu_and_follows_the_batchnorm() -> None:
    """act=True is SiLU (all models but the tiny ones), applied after conv and BatchNorm."""
    torch.manual_seed(0)
    layer = randomize_batchnorm(Conv(4, 6, 3)).eval()
    x = torch.randn(1, 4, 8, 8)
    assert type(layer.act) is nn.SiLU
    torch.testing.assert_close(layer(x), nn.functional.silu(layer.bn(layer.conv(x))), rtol=0, atol=0)


def test_repconv_has_an_identity_branch_only_at_stride_one() -> None:
    """An identity branch needs equal widths and the same resolution: none at stride 2."""
    assert RepConv(8, 8, 3, 1).rbr_identity is not None
    strided = RepConv(8, 8, 3, 2)
    assert strided.rbr_identity is None
    assert strided(torch.randn(1, 8, 8, 8)).shape == (1, 8, 4, 4)


def test_csp_blocks_default_shortcuts_and_groups_as_the_reference() -> None:
    """The reference's defaults: BottleneckCSPB's dark blocks without residual, ResCSPB's with it, the
    ResX blocks with 32 groups in their 3x3; an explicit shortcut or group count overrides the default."""
    from yolov7lib.models import csp

    assert not csp.BottleneckCSPB(64, 64).m[0].add
    assert csp.BottleneckCSPA(64, 64).m[0].add and csp.ResCSPB(64, 64).m[0].add
    assert csp.ResXCSPA(128, 128).m[0].cv2.conv.groups == 32
    assert csp.ResXCSPB(128, 128).m[0].cv2.conv.groups == 32
    assert csp.BottleneckCSPB(64, 64, shortcut=True).m[0].add
    assert not csp.ResCSPA(64, 64, shortcut=False).m[0].add
    assert csp.ResXCSPA(128, 128, g=8).m[0].cv2.conv.groups == 8
