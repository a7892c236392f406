"""The data the report's figures and architecture cells are drawn from: the speed/accuracy figures, their
writers and inputs, Figure 8 and the architecture counts. Each test checks it against a value derived
from the paper's text, its tables or the definition of the quantity."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.container import ErrorbarContainer

from yolov7lib import paper
from yolov7lib.data.augment import letterbox
from yolov7lib.data.synth import render_image
from yolov7lib.engine.checkpoint import save_checkpoint
from yolov7lib.models import create_model, model_spec
from yolov7lib.report import Reproductions
from yolov7lib.report import figures as figures_module
from yolov7lib.report.architecture import ArchitectureCount, architecture_counts, architecture_frame
from yolov7lib.report.figure_sources import load_trained_model, measured_speed_points, sample_image
from yolov7lib.report.objectness import objectness_figure
from yolov7lib.report.speed_accuracy import (
    MeasuredPoint,
    measured_points,
    series_lines,
    speed_accuracy_figure,
)

CPU = "CPU, 2 cores, batch 1"
GEN = "generated data, 320 px"


def _footnote(fig) -> str:
    return " ".join(t.get_text().replace("\n", " ") for t in fig.texts)


# --------------------------------------------------------------------------------------------------
# Figure 11: the points quoted in Section 8
# --------------------------------------------------------------------------------------------------


def test_figure_11_draws_the_points_quoted_in_section_8() -> None:
    """Section 8: 'Our YOLOv7-tiny (35.2% AP, 0.4 ms) model is +25% faster and +0.2% AP higher than
    meituan/YOLOv6-n (35.0% AP, 0.5 ms) ... with batch=32'; E6E (56.8%) and YOLOv6-s (43.1%) have
    no time."""
    lines = series_lines(speed_accuracy_figure(11))
    assert lines == {"paper:YOLOv7 (ours):": [(0.4, 35.2)], "paper:meituan/YOLOv6:": [(0.5, 35.0)]}
    # the quoted differences follow from the drawn points: (0.5 / 0.4 - 1) = +25%, 35.2 - 35.0 = +0.2
    (tx, ty), (nx, ny) = lines["paper:YOLOv7 (ours):"][0], lines["paper:meituan/YOLOv6:"][0]
    assert 100 * (nx / tx - 1) == pytest.approx(25.0) and ty - ny == pytest.approx(0.2)
    note = _footnote(speed_accuracy_figure(11))
    assert "YOLOv7-E6E (56.8% AP" in note and "YOLOv6-s (43.1% AP" in note


# --------------------------------------------------------------------------------------------------
# Figures 1, 9, 10: markers, measured points, spreads, footnote
# --------------------------------------------------------------------------------------------------


def test_a100_frame_rates_are_drawn_hollow_v100_filled() -> None:
    """Table 9 mixes V100 and A100 frame rates: the A100 points are the hollow ones."""
    ax = speed_accuracy_figure(9).axes[0]
    lines = {line.get_gid(): line for line in ax.get_lines()}
    a100, v100 = lines["paper:other detectors:A100"], lines["paper:other detectors:V100"]
    assert a100.get_markerfacecolor() == "white"
    assert v100.get_markerfacecolor() != "white"
    a100_fps = sorted(paper.table(9).query("group == 'A100'")["fps"])
    assert sorted(float(x) for x in a100.get_xdata()) == a100_fps


def test_measured_points_of_figure_10_obey_its_real_time_filter() -> None:
    """Figure 10 plots the V100 rows at 30 FPS or more: a measured F-RCNN (20 FPS in Table 9) belongs
    to Figure 9 only."""
    reps = Reproductions()
    for row_id, fps, ap in (("yolov7", 3.0, 40.0), ("f-rcnn-r101-fpn-plus", 1.0, 30.0)):
        reps.add(9, row_id, "fps", fps, CPU)
        reps.add(9, row_id, "ap_val", ap, GEN)
    assert paper.row(9, "f-rcnn-r101-fpn-plus")["fps"] < 30
    fig9, _ = measured_points(9, reps)
    fig10, _ = measured_points(10, reps)
    assert sorted(p.label for p in fig9) == ["F-RCNN-R101-FPN+", "YOLOv7"]
    assert [(p.label, p.x, p.y) for p in fig10] == [("YOLOv7", 3.0, 40.0)]


def test_measured_spreads_stay_on_their_own_axis() -> None:
    """An AP spread is a y error, an FPS spread an x error."""
    reps = Reproductions()
    reps.add(2, "yolov7", "fps", 3.0, CPU, spread=0.25, seeds=3)
    reps.add(2, "yolov7", "ap_val", 41.5, GEN, spread=0.4, seeds=3)
    reps.add(2, "yolov7x", "fps", 1.5, CPU)
    reps.add(2, "yolov7x", "ap_val", 44.0, GEN, spread=0.7, seeds=3)
    pts = {p.label: p for p in measured_points(1, reps)[0]}
    assert (pts["YOLOv7"].xerr, pts["YOLOv7"].yerr) == (0.25, 0.4)
    assert (pts["YOLOv7-X"].xerr, pts["YOLOv7-X"].yerr) == (None, 0.7)


def _error_bars(fig) -> list[tuple[np.ndarray, np.ndarray]]:
    """(x-error segments, y-error segments) of every error bar container of the figure."""
    out = []
    for c in fig.axes[0].containers:
        if isinstance(c, ErrorbarContainer):
            xcol, ycol = c.lines[2]
            out.append((np.asarray(xcol.get_segments()), np.asarray(ycol.get_segments())))
    return out


def test_fps_spread_is_propagated_to_milliseconds() -> None:
    """Figure 1 shows 1000 / FPS: an FPS spread s at f FPS is d(1000 / f) = 1000 s / f^2 ms."""
    p = MeasuredPoint("m", 100.0, 40.0, "yolov7lib, CPU", xerr=2.0, yerr=0.5)
    fig = speed_accuracy_figure(1, [p])
    (xseg, yseg), *rest = _error_bars(fig)
    assert rest == []
    half = 1000.0 * 2.0 / 100.0**2  # 0.2 ms
    np.testing.assert_allclose(xseg[0], [[10.0 - half, 40.0], [10.0 + half, 40.0]], rtol=1e-12)
    np.testing.assert_allclose(yseg[0], [[10.0, 39.5], [10.0, 40.5]], rtol=1e-12)


def test_figure_1_footnote_names_the_families_drawn_at_ap_val() -> None:
    """Figure 1 plots AP test-dev; only the rows without one (Table 2 prints '-') fall back to AP val."""
    frame = paper.table(2)
    fallback = frame[frame["kind"].eq("model") & frame["ap_test"].isna()]
    assert set(fallback["key"].str.slice(0, 6)) == {"yolov5"}
    note = _footnote(speed_accuracy_figure(1))
    assert "AP test not in the table, AP val used: YOLOv5 (r6.1)." in note
    for n in (9, 10, 11):  # AP val only: no fallback to speak of
        assert "not in the table" not in _footnote(speed_accuracy_figure(n))


# --------------------------------------------------------------------------------------------------
# The writers hand each figure its own data
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """Replace save_png by a recorder: file name -> the matplotlib Figure that would be written."""
    out: dict[str, object] = {}

    def fake_save(fig, path):
        out[Path(path).name] = fig
        return Path(path)

    monkeypatch.setattr(figures_module, "save_png", fake_save)
    return out


def test_written_figures_get_the_reproductions(captured, tmp_path: Path) -> None:
    reps = Reproductions()
    reps.add(2, "yolov7", "fps", 4.0, CPU)
    reps.add(2, "yolov7", "ap_val", 41.5, GEN)
    figures_module.write_speed_accuracy_figures(tmp_path, reps)
    measured = f"measured:speed: {CPU}; AP: {GEN}"
    assert series_lines(captured["figure1.png"])[measured] == [(1000.0 / 4.0, 41.5)]  # ms
    for name in ("figure9.png", "figure10.png", "figure11.png"):
        assert measured not in series_lines(captured[name])  # Table 2 rows are Figure 1's only
    figures_module.write_speed_accuracy_figure(1, tmp_path / "one.png", reps)
    assert series_lines(captured["one.png"])[measured] == [(250.0, 41.5)]


def test_written_figures_get_their_own_points(captured, tmp_path: Path) -> None:
    scale = "yolov7lib, CPU"
    points = {1: [("batch 1", 20.0, 35.0)], 11: [("batch 32", 0.8, 35.0)]}
    figures_module.write_speed_accuracy_figures(tmp_path, points, measured_scale=scale)
    lines = {n: series_lines(captured[f"figure{n}.png"]) for n in (1, 9, 10, 11)}
    assert lines[1][f"measured:{scale}"] == [(50.0, 35.0)]  # 20 FPS = 50 ms
    assert lines[11][f"measured:{scale}"] == [(0.8, 35.0)]  # already ms per image
    assert all(not any(g.startswith("measured:") for g in lines[n]) for n in (9, 10))


def test_written_objectness_figure_shows_the_requested_image(captured, tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    outs = [torch.randn(2, 3, 64 // s, 64 // s, 6, generator=g) for s in (8, 16, 32)] * 2
    image = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8, generator=g)
    figures_module.write_objectness_figure({"m": outs}, image, tmp_path / "f8.png", index=1)
    fig = captured["f8.png"]
    drawn = {im.get_gid(): im.get_array() for ax in fig.axes for im in ax.get_images() if im.get_gid()}
    np.testing.assert_allclose(drawn["image:m"], image[1].permute(1, 2, 0).numpy() / 255.0, rtol=1e-6)
    want = torch.sigmoid(outs[0][1, ..., 4]).amax(0).numpy()  # image 1, lead P3
    np.testing.assert_allclose(np.asarray(drawn["objectness:m:lead:0"]), want, rtol=1e-6)


# --------------------------------------------------------------------------------------------------
# Figure 8: the grey background is the image's luminance
# --------------------------------------------------------------------------------------------------


def test_objectness_background_is_the_luminance_of_the_rgb_image() -> None:
    """ITU-R BT.601 luma: 0.299 R + 0.587 G + 0.114 B; a pure red image is 0.299 grey."""
    g = torch.Generator().manual_seed(1)
    outs = [torch.randn(1, 3, 64 // s, 64 // s, 6, generator=g) for s in (8, 16, 32)]
    red = np.zeros((64, 64, 3), dtype=np.uint8)
    red[..., 0] = 255
    fig = objectness_figure(outs, red)
    greys = [im.get_array() for ax in fig.axes for im in ax.get_images() if im.get_cmap().name == "gray"]
    assert len(greys) == 3  # one under each lead map (no auxiliary head)
    for arr in greys:
        np.testing.assert_allclose(np.asarray(arr), 0.299, rtol=1e-6)


# --------------------------------------------------------------------------------------------------
# Inputs of the figures: AP fractions, checkpoints, the sample image
# --------------------------------------------------------------------------------------------------


def test_an_ap_fraction_of_one_is_one_hundred_percent(tmp_path: Path) -> None:
    """eval.json's coco.ap in [0, 1] is a fraction, 1.0 included (a perfect score is 100% AP)."""
    rows = [{"model": "m", "backend": "", "batch": 1, "img": 64, "ms_per_image": 10.0, "images_per_s": 100.0}]
    speed, evaluation = tmp_path / "speed.json", tmp_path / "eval.json"
    speed.write_text(json.dumps({"device": "cpu", "rows": rows}))
    evaluation.write_text(json.dumps({"model": "m", "scale": "s", "coco": {"ap": 1.0}}))
    points, notes = measured_speed_points(speed, evaluation)
    assert notes == [] and [(p.x, p.y) for p in points[1]] == [(100.0, 100.0)]
    assert [(p.x, p.y) for p in points[11]] == [(10.0, 100.0)]


def test_checkpoint_loads_the_ema_weights_rather_than_the_raw_ones(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model({**model_spec("yolov7-tiny"), "width_multiple": 0.125}, nc=2)
    raw = model.state_dict()
    ema = {k: (v + 1.0 if v.is_floating_point() else v) for k, v in raw.items()}
    path = save_checkpoint({"model_cfg": model.cfg, "model": raw, "ema": {"model": ema}}, tmp_path / "w.pt")
    loaded = load_trained_model(path).state_dict()
    for k, v in ema.items():
        torch.testing.assert_close(loaded[k], v, rtol=0, atol=0)


def test_sample_image_is_rgb() -> None:
    """The generated images are BGR (OpenCV order); the network input is RGB: channel 0 is red."""
    bgr, _ = render_image(0, "val", 0, 64)
    boxed, _, _ = letterbox(bgr, 64, auto=False)
    img = sample_image(64)
    assert img.shape == (1, 3, 64, 64)
    assert not np.array_equal(boxed[..., 0], boxed[..., 2])  # the order is visible in this image
    for c in range(3):
        np.testing.assert_allclose(img[0, c].numpy() * 255.0, boxed[..., 2 - c].astype(np.float32), atol=1e-3)


# --------------------------------------------------------------------------------------------------
# Architecture counts: the difference's sign, official counts, the D6 training graph
# --------------------------------------------------------------------------------------------------


def test_difference_is_kit_minus_paper() -> None:
    c = ArchitectureCount(1, "yolov7", "yolov7", 640, "params", 36.9, 1, 36.905341, "fused deploy graph")
    assert c.difference == pytest.approx(0.005341)
    low = ArchitectureCount(1, "yolov7", "yolov7", 640, "flops", 104.7, 1, 104.5110784, "fused deploy graph")
    assert low.difference == pytest.approx(-0.1889216)
    frame = architecture_frame([c, low])
    assert list(frame["difference"]) == pytest.approx([0.005341, -0.1889216])
    assert list(frame["agrees"]) == [True, False]


def _table2_counts(*models: str) -> dict[tuple[str, str], ArchitectureCount]:
    return {(c.model, c.column): c for c in architecture_counts(models) if c.table == 2}


def test_counts_match_the_official_figures_for_x_and_yolor_csp() -> None:
    """YOLOv7-X: 71,311,741 fused parameters and 189.7 GFLOPs at 640 (official-figures.md);
    YOLOR-CSP: 52,891,610 parameters, its implicit vectors kept as in the official fused count."""
    counts = _table2_counts("yolov7x", "yolor-csp")
    x_flops = counts[("yolov7x", "flops")]
    assert round(x_flops.kit, 1) == x_flops.official == paper.OFFICIAL_COUNTS["yolov7x"].gflops == 189.7
    assert round(counts[("yolov7x", "params")].kit * 1e6) == 71_311_741
    assert round(counts[("yolor-csp", "params")].kit * 1e6) == 52_891_610


def test_d6_is_counted_on_its_training_graph_as_the_paper_does() -> None:
    """The paper's 154.7M / 806.8G for YOLOv7-D6 are its training graph (official: 154,652,532 fused
    parameters, 806.1 GFLOPs at 1280; the deploy graph has 133.8M / 701.7G)."""
    counts = _table2_counts("yolov7-d6")
    d6p, d6f = counts[("yolov7-d6", "params")], counts[("yolov7-d6", "flops")]
    assert d6p.graph.startswith("training graph") and d6p.agrees and d6p.paper == 154.7
    assert round(d6p.kit * 1e6) == 154_652_532 and d6p.official == pytest.approx(154.652532)
    assert d6f.official == 806.1 and round(d6f.kit, 1) == 806.1
    assert math.isclose(d6f.paper, 806.8) and not d6f.agrees and d6f.flag
