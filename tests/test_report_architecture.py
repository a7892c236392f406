"""#Param and FLOPs cells of Tables 1, 2, 3 and 9 counted on the kit's models (report.architecture)."""

from __future__ import annotations

import pytest
from torch import nn

from yolov7lib import paper
from yolov7lib.models.info import model_flops
from yolov7lib.report import Reproductions, compare_table
from yolov7lib.report.architecture import (
    FLAGS,
    SCALE,
    TABLE3_MODELS,
    architecture_counts,
    architecture_rows,
    conv_bias_gflops,
    count_model,
    write_architecture_json,
)

FAST_MODELS = ("yolov7-tiny", "yolov4-csp")


def check_counts(counts) -> None:
    """Every counted cell: equal to official-figures.md where it has the count (params exactly,
    GFLOPs at its one decimal), equal to the paper at its rounding unless flagged (and flagged only
    where it is not), flagged FLOPs explained by the counting tool."""
    assert counts
    for c in counts:
        official = paper.OFFICIAL_COUNTS.get(c.model)
        if c.column == "params" and official is not None:
            assert round(c.kit * 1e6) == official.paper_params, (c.model, c.kit)
            assert c.official == official.paper_params / 1e6
        if c.column == "flops" and c.official is not None:
            assert round(c.kit, 1) == pytest.approx(c.official), (c.model, c.kit, c.official)
        assert c.agrees != bool(c.flag), (c.table, c.row, c.column, c.kit, c.paper)
        if c.column == "flops":
            # the paper's thop also counts the bias additions: with them the kit comes closer
            assert c.thop_style is not None and c.thop_style > c.kit
            assert abs(c.thop_style - c.paper) < abs(c.kit - c.paper) or c.agrees, (c.row, c.thop_style)
            assert abs(c.difference) <= 0.0025 * c.paper + 10.0**-c.decimals, (c.row, c.kit, c.paper)


def test_fast_models_match_the_official_counts_and_the_paper() -> None:
    counts = architecture_counts(FAST_MODELS)
    assert {c.model for c in counts} == set(FAST_MODELS)
    assert {(c.row, c.size) for c in counts if c.model == "yolov7-tiny"} >= {
        ("yolov7-tiny@416", 416),
        ("yolov7-tiny@320", 320),
    }
    check_counts(counts)


def test_flops_at_other_sizes_scale_with_the_input_area() -> None:
    # conv outputs scale exactly with the area when every size is a multiple of the largest stride
    c = count_model("yolov7-tiny", (320, 416, 640))
    g = c["gflops"]
    assert g[416] == pytest.approx(g[640] * (416 / 640) ** 2, rel=1e-12)
    assert g[320] == pytest.approx(g[640] / 4, rel=1e-12)
    assert round(g[640], 1) == paper.OFFICIAL_COUNTS["yolov7-tiny"].gflops


def test_conv_bias_gflops_against_a_hand_count() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, 2, 1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 1, bias=False),
        nn.Conv2d(16, 16, 3, 1, 1, groups=4),
    )
    size = 32
    hand = (
        16 * 16 * 8 * (3 * 9 + 1) + 16 * 16 * 16 * 8 + 16 * 16 * 16 * (4 * 9 + 1)
    )  # outputs x (MACs + bias)
    assert conv_bias_gflops(net, size) == pytest.approx(2 * hand / 1e9, rel=1e-12)
    no_bias = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.Conv2d(8, 4, 3, 1, 1, bias=False))
    assert conv_bias_gflops(no_bias, size) == pytest.approx(model_flops(no_bias, size, ch=3) / 1e9, rel=1e-12)


def test_every_yolov7_and_built_baseline_row_is_counted() -> None:
    rows = {(r.table, r.id) for r, _ in architecture_rows()}
    for t in (1, 2, 9):
        built = {(t, r.id) for r in paper.get_table(t).models if r.registry is not None}
        assert built <= rows
    assert {(3, r) for r in TABLE3_MODELS} <= rows
    assert all(m in paper.OFFICIAL_COUNTS or m in TABLE3_MODELS.values() for _, m in architecture_rows())
    # every flag names a counted (model, size, column)
    counted = {(m, int(r.size or 640)) for r, m in architecture_rows()}
    assert {(m, s) for m, s, _ in FLAGS} <= counted


def test_a_model_without_a_counted_cell_is_named_not_skipped() -> None:
    """Notebook 06 with `models: [yolov7-tinyy]` (or a registry model no table row counts) once counted
    nothing and stopped at a bare AssertionError three cells later."""
    for name in ("yolov7-tinyy", "yolov7-tiny-cpu"):
        with pytest.raises(ValueError, match=rf"counted on {name}; the models counted: .*yolov7-tiny"):
            architecture_counts(["yolov7-tiny", name])


def test_json_is_read_back_as_reproduced_cells(tmp_path) -> None:
    counts = architecture_counts(["yolov7-tiny"])
    path = write_architecture_json(tmp_path / "architecture.json", counts)
    reps = Reproductions.from_json(path)
    assert {k: v.value for k, v in reps.items()} == {(c.table, c.row, c.column): c.kit for c in counts}
    assert {v.scale for v in reps.values()} == {SCALE}
    frame = compare_table(1, reps)
    line = frame[(frame.row == "yolov7-tiny@416") & (frame.column == "flops")].iloc[0]
    assert line.status == "reproduced" and line.reproduced == pytest.approx(
        next(c.kit for c in counts if c.row == "yolov7-tiny@416" and c.column == "flops")
    )
    # a cell that disagrees with the paper carries its flag's reason into the table; the others do not
    for c in counts:
        source = reps[(c.table, c.row, c.column)].source
        assert (c.flag in source) if c.flag else ("differs" not in source), (c.row, c.column, source)
    assert any(c.flag for c in counts)


@pytest.mark.slow
def test_every_cell_matches_the_official_counts_and_the_paper() -> None:
    counts = architecture_counts()
    check_counts(counts)
    cells = {(c.table, c.row, c.column) for c in counts}
    assert len(cells) == len(counts)
    d6 = [c for c in counts if c.model == "yolov7-d6"]
    assert d6 and all(c.graph.startswith("training graph") for c in d6)
    assert all(c.agrees for c in counts if c.column == "params")
