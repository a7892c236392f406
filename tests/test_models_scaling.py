"""Compound scaling (Section 3.2, Table 3): YOLOv7-X from YOLOv7, E6 and D6 from W6, the Table 3 variants."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from yolov7lib.models import ELAN, ELANNet, count_params, create_model, reparameterize
from yolov7lib.models.info import model_flops
from yolov7lib.models.registry import get_entry
from yolov7lib.models.scaling import compound_scale, scale_depth, scale_width, stack_neck, v7x_light

# YOLOv7-X written down independently, from the official yolov7x cfg's numbers
YOLOV7X = ELANNet(
    stem=((40, 1), (80, 2), (80, 1), (160, 2)),
    stages=(
        ELAN(64, 64, 3, 2, 320),
        ELAN(128, 128, 3, 2, 640),
        ELAN(256, 256, 3, 2, 1280),
        ELAN(256, 256, 3, 2, 1280),
    ),
    down=(160, 320, 640),
    spp=640,
    lateral=(320, 160),
    top_down=(ELAN(256, 256, 3, 2, 320), ELAN(128, 128, 3, 2, 160)),
    neck_down=(160, 320),
    bottom_up=(ELAN(256, 256, 3, 2, 320), ELAN(512, 512, 3, 2, 640)),
    outputs=(320, 640, 1280),
    output_conv="Conv",
)
# Table 3: #Param (fused deploy graph, as every #Param of the paper but D6's) and FLOPs
TABLE3 = {
    "yolov7x-light": (47.0, 125.5),
    "yolov7x-light-width1.25": (73.4, 195.5),
    "yolov7x-light-depth2.0": (69.3, 187.6),
    "yolov7x": (71.3, 189.9),
}


def arch(name: str) -> ELANNet:
    entry = get_entry(name).arch
    assert isinstance(entry, ELANNet)
    return entry


def test_yolov7x_comes_out_of_yolov7_by_compound_scaling() -> None:
    scaled = compound_scale(v7x_light(arch("yolov7")), depth=1.5)
    assert scaled == YOLOV7X
    ours, reference = scaled.spec("yolov7x"), YOLOV7X.spec("yolov7x")
    assert ours["backbone"] + ours["head"] == reference["backbone"] + reference["head"]  # layer by layer
    with torch.device("meta"):
        model = create_model("yolov7x")
    assert count_params(model) == 71_347_394  # official-figures.md, training graph
    assert [m.type for m in model.model] == [row[2] for row in reference["backbone"] + reference["head"]]


def test_compound_scaling_follows_the_rule() -> None:
    base = v7x_light(arch("yolov7"))
    scaled = compound_scale(base, depth=1.5)
    for name in ("stages", "top_down", "bottom_up"):
        for before, after in zip(getattr(base, name), getattr(scaled, name), strict=True):
            assert after.stacks == before.stacks * 3 // 2  # depth x1.5 in the computational block
            assert (after.branch, after.hidden) == (before.branch, before.hidden)
            assert after.concat_width * 4 == before.concat_width * 5  # its output widens by 5/4 ...
            assert after.out * 4 == before.out * 5  # ... and so does its transition layer
    assert [c * 5 // 4 for c, _ in base.stem] == [c for c, _ in scaled.stem]
    for name in ("down", "lateral", "neck_down", "outputs"):
        assert [c * 5 // 4 for c in getattr(base, name)] == list(getattr(scaled, name))
    assert scaled.spp == base.spp * 5 // 4


def test_depth_only_and_width_only_scaling() -> None:
    base = v7x_light(arch("yolov7"))
    deeper = scale_depth(base, 2.0)
    assert all(b.stacks == 4 for b in deeper.stages + deeper.top_down + deeper.bottom_up)
    assert deeper.outputs == base.outputs and [b.out for b in deeper.stages] == [b.out for b in base.stages]
    wider = scale_width(base, 1.25)
    assert [b.hidden for b in wider.stages] == [b.hidden * 5 // 4 for b in base.stages]
    assert wider.outputs == tuple(c * 5 // 4 for c in base.outputs)


def test_scaled_depths_and_widths_round_as_the_reference() -> None:
    """Depth: Python's round of stacks x factor (2 x 1.25 = 2.5 -> 2, 2 x 1.75 = 3.5 -> 4), at least 1.
    Width: up to the next multiple of 8 (64 x 1.05 = 67.2 -> 72)."""
    base = v7x_light(arch("yolov7"))
    assert {b.stacks for b in base.stages} == {2}
    assert {b.stacks for b in scale_depth(base, 1.25).stages} == {2}
    assert {b.stacks for b in scale_depth(base, 1.75).stages} == {4}
    assert {b.stacks for b in scale_depth(base, 0.1).stages} == {1}
    wider = scale_width(base, 1.05)
    assert [b.hidden for b in wider.stages] == [-(-b.hidden * 105 // 800) * 8 for b in base.stages]
    assert 72 in [b.hidden for b in wider.stages]  # 64 x 1.05 is among them


def test_stack_scaling_on_the_neck_keeps_the_concatenation_width() -> None:
    base = arch("yolov7")
    light = stack_neck(base)
    for before, after in zip(base.top_down + base.bottom_up, light.top_down + light.bottom_up, strict=True):
        assert (before.convs_per_stack, after.convs_per_stack) == (1, 2)
        assert after.hidden == after.branch and after.concat_width == before.concat_width
    assert light.stages == base.stages
    with pytest.raises(ValueError, match="whole stacks"):
        stack_neck(replace(base, top_down=(ELAN(256, 96, 4, 1, 256), base.top_down[1])))


def test_blocks_widening_differently_have_no_single_transition_factor() -> None:
    base = arch("yolov7")
    mixed = replace(base, stages=(ELAN(64, 32, 2, 2, 256), *base.stages[1:]))
    with pytest.raises(ValueError, match="different factors"):
        compound_scale(mixed, depth=1.5)


def test_e6_and_d6_come_out_of_w6_by_compound_scaling() -> None:
    w6 = replace(arch("yolov7-w6"), down_type="DownC", neck_down_type="DownC")  # E6 / D6 down-sample by DownC
    assert compound_scale(w6, depth=1.5) == arch("yolov7-e6")
    d6 = compound_scale(w6, depth=2.0)
    official = arch("yolov7-d6")
    assert d6 != official and replace(d6, aux_outputs=official.aux_outputs) == official  # aux widths differ


@pytest.mark.parametrize("name", list(TABLE3))
def test_table3_variants_match_the_paper(name: str) -> None:
    params, flops = TABLE3[name]
    with torch.device("meta"):
        deploy = reparameterize(create_model(name))
    assert round(count_params(deploy) / 1e6, 1) == params
    assert model_flops(deploy, 640) / 1e9 == pytest.approx(flops, rel=5e-3)
