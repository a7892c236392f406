"""The ablation architectures of Tables 4-8: structure, deploy graphs, re-parameterization."""

from __future__ import annotations

import functools
from dataclasses import replace

import pytest
import torch

from yolov7lib.models import count_params, create_model, model_spec, randomize_batchnorm, reparameterize
from yolov7lib.models.ablations import FIGURE6, with_residual_blocks
from yolov7lib.models.csp import RBottleneck, RepRBottleneck
from yolov7lib.models.info import model_flops
from yolov7lib.models.layers import RepConv
from yolov7lib.models.registry import get_entry
from yolov7lib.models.scaling import scale_width
from yolov7lib.models.spec import deploy_spec, resolve_from, spec_rows

BASE = {  # ablation -> the model whose deploy graph it shares
    **{f"yolov7x-fig6{letter}": "yolov7x" for letter in FIGURE6},
    "yolor-w6-repcsp": "yolor-w6",
    "yolor-w6-rcsp": "yolor-w6",
    "yolor-w6-reprcsp": "yolor-w6",
    "yolor-csp-reprcsp": "yolor-csp",
    "yolov7-e6-noaux": "yolov7-e6",
    "yolov7-e6e-noaux": "yolov7-e6e",
    "yolov7-e6e-aux": "yolov7-e6e",
}


def _deploy_rows(name: str) -> list[list[object]]:
    return spec_rows(deploy_spec(model_spec(name))[0])


@functools.cache
def deploy_figures(name: str) -> tuple[int, float]:
    """Parameters and FLOPs of the fused deploy graph (meta device)."""
    with torch.device("meta"):
        deploy = create_model(name, deploy=True)
    return count_params(deploy), model_flops(deploy, get_entry(name).img_size)


@pytest.mark.parametrize("name", list(BASE))
def test_ablations_share_the_deploy_graph_of_their_base(name: str) -> None:
    """Re-parameterized convolutions and auxiliary heads are training-time only (Sections 4.1, 4.2)."""
    if name.startswith("yolov7-e6"):  # same deploy spec, layer by layer
        assert _deploy_rows(name) == _deploy_rows(BASE[name])
    else:  # RepConv(N) fuse to one 3x3 convolution: same parameters and operations
        assert deploy_figures(name) == deploy_figures(BASE[name])


def _elan_convs(name: str) -> list[tuple[str, int]]:
    """(type, position in its stack) of every 3x3 conv inside an ELAN computational block."""
    cfg = model_spec(name)
    rows = spec_rows(cfg)
    found = []
    for group in cfg["groups"]:
        if group["kind"] != "ELAN":
            continue
        p = group["convs_per_stack"]
        convs = [j for j in range(group["first"], group["last"] + 1) if rows[j][3][1:2] == [3]]
        found += [(rows[j][2], k % p) for k, j in enumerate(convs)]
    return found


@pytest.mark.parametrize(
    ("letter", "first", "second"),
    [
        ("a", "RepConv", "RepConv"),
        ("b", "RepConv", "Conv"),
        ("c", "Conv", "RepConvN"),
        ("d", "Conv", "RepConv"),
        ("e", "RepConvN", "RepConvN"),
    ],
)
def test_figure6_placements(letter: str, first: str, second: str) -> None:
    convs = _elan_convs(f"yolov7x-fig6{letter}")
    assert len(convs) == 4 * 6 + 4 * 6  # 8 ELANs of 3 stacks x 2 convs (backbone and neck)
    assert {t for t, pos in convs if pos == 0} == {first}
    assert {t for t, pos in convs if pos == 1} == {second}
    assert {t for t, _ in _elan_convs("yolov7x")} == {"Conv"}


def test_rcsp_has_exactly_the_parameters_and_operations_of_csp() -> None:
    with torch.device("meta"):
        base, reversed_ = create_model("yolor-w6"), create_model("yolor-w6-rcsp")
    assert count_params(base) == count_params(reversed_)
    assert model_flops(base, 640) == model_flops(reversed_, 640)
    blocks = [m for m in reversed_.modules() if isinstance(m, RBottleneck)]
    assert len(blocks) == 3 + 7 + 7 + 3 + 3  # every residual block of the CSPDarknet backbone
    assert all(
        b.cv1.conv.kernel_size == (3, 3) and b.cv2.conv.kernel_size == (1, 1) and b.add for b in blocks
    )
    with pytest.raises(ValueError, match="not a CSP block of dark blocks"):
        with_residual_blocks(get_entry("r50-csp").arch, "rcsp")
    csp = get_entry("yolor-csp").arch  # a stage of plain dark blocks (no CSP split) is refused as well
    plain = replace(csp, stages=(replace(csp.stages[0], block="Bottleneck"), *csp.stages[1:]))
    with pytest.raises(ValueError, match="not a CSP block of dark blocks"):
        with_residual_blocks(plain, "rcsp")


def test_table8_auxiliary_head_attachments() -> None:
    def aux_inputs(name: str) -> list[str]:
        rows = spec_rows(model_spec(name))
        head = len(rows) - 1
        aux_convs = resolve_from(rows[head][0], head)[4:]
        return [rows[resolve_from(rows[j][0], j)[0]][2] for j in aux_convs]

    assert aux_inputs("yolov7-e6e-aux") == ["Shortcut", "Shortcut", "Shortcut", "SPPCSPC"]  # after the merge
    assert aux_inputs("yolov7-e6e") == ["Conv", "Conv", "Conv", "SPPCSPC"]  # one group, before the merge
    assert model_spec("yolov7-e6e-noaux")["head"][-1][2] == "IDetect"


def _small(name: str) -> dict[str, object]:
    """A narrow copy of an ablation architecture (same graph, widths / 8) for numerical checks."""
    arch = get_entry(name).arch
    if hasattr(arch, "width_multiple"):
        return replace(arch, width_multiple=arch.width_multiple / 8).spec(name)
    return scale_width(arch, 1 / 8).spec(name)


@torch.no_grad()
@pytest.mark.parametrize("name", ["yolov7x-fig6a", "yolor-w6-reprcsp", "yolor-w6-repcsp"])
def test_small_ablation_models_reparameterize_exactly(name: str) -> None:
    torch.manual_seed(0)
    model = randomize_batchnorm(create_model(_small(name)), seed=1).eval()
    g = torch.Generator().manual_seed(1)
    identity = [m.rbr_identity is not None for m in model.modules() if isinstance(m, RepConv)]
    assert identity and any(identity)
    if "rcsp" in name:
        assert any(isinstance(m, RepRBottleneck) for m in model.modules())
    x = torch.rand(1, 3, 64, 64, generator=g)
    expected = model(x)[0]
    got = reparameterize(model)(x)[0]
    assert ((expected - got).abs().max() / expected.abs().max()).item() < 1e-4
