"""The paper's figures (`yolov7lib.report.figures`): speed/accuracy plots (Figures 1, 9, 10, 11),
architecture diagrams (Figures 2-7) and objectness maps (Figure 8).

What was drawn is read back from the matplotlib objects (Line2D data, AxesImage arrays, patches and
texts) and compared with values computed here independently: from the paper's DataFrames, a naive
longest-path, a naive per-cell sigmoid, plain geometry on the laid-out boxes and arrows.
"""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from yolov7lib import paper
from yolov7lib.report import Reproductions
from yolov7lib.report.diagram import DiagramError, Node, depths, diagram_figure, layout
from yolov7lib.report.figures import (
    MeasuredPoint,
    speed_accuracy_figure,
    write_diagram,
    write_objectness_figure,
    write_speed_accuracy_figure,
    write_speed_accuracy_figures,
)
from yolov7lib.report.objectness import objectness_figure, objectness_map, split_lead_aux
from yolov7lib.report.speed_accuracy import series_lines

ROOT = Path(__file__).resolve().parents[1]


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG header, read without an image library."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


# --------------------------------------------------------------------------------------------------
# Figures 1, 9, 10, 11
# --------------------------------------------------------------------------------------------------

FAMILIES = {
    "yolov7": "YOLOv7 (ours)",
    "yolor": "YOLOR",
    "yolov5": "YOLOv5 (r6.1)",
    "yolox": "YOLOX",
    "ppyoloe": "PPYOLOE",
}


def expected_paper_points(number: int) -> Counter:
    """The points the paper's figure should show, keyed like the lines' gids, from the DataFrames:
    Figure 1 = Table 2, AP test-dev (AP val where missing) against 1000 / FPS; Figure 9 = Table 9,
    AP val against FPS; Figure 10 = its V100 rows at >= 30 FPS; Figure 11 = the timed points quoted."""
    out: Counter = Counter()
    if number == 11:
        for s in paper.FIGURES[11].series:
            out.update((f"paper:{s.label}:", x, y) for _, x, y in s.points if x is not None)
        return out
    frame = paper.table(2 if number == 1 else 9)
    frame = frame[frame["kind"] == "model"]
    if number == 10:
        frame = frame[(frame["group"] == "V100") & (frame["fps"] >= 30)]
    for _, r in frame.iterrows():
        family = next((label for prefix, label in FAMILIES.items() if r["key"].startswith(prefix)), None)
        if number == 1:
            x, y = 1000.0 / r["fps"], r["ap_test"] if not math.isnan(r["ap_test"]) else r["ap_val"]
        else:
            x, y = r["fps"], r["ap_val"]
        key = f"paper:{family}:{int(r['size'])}" if family else f"paper:other detectors:{r['group']}"
        out[(key, round(x, 9), y)] += 1
    return out


def drawn_paper_points(fig) -> Counter:
    return Counter(
        (gid, round(x, 9), y)
        for gid, pts in series_lines(fig).items()
        if gid.startswith("paper:")
        for x, y in pts
    )


@pytest.mark.parametrize("number", [1, 9, 10, 11])
def test_speed_accuracy_figure_plots_the_papers_numbers(number: int) -> None:
    fig = speed_accuracy_figure(number)
    assert drawn_paper_points(fig) == expected_paper_points(number)
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel()
    assert ("ms" in ax.get_xlabel()) == (number in (1, 11))
    assert "%" in ax.get_ylabel()
    # one legend entry per series drawn, families as lines with markers
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    if number == 11:
        assert legend == ["YOLOv7 (ours)", "meituan/YOLOv6"]
    else:
        assert legend[:5] == list(FAMILIES.values())
        assert legend[5:] == (
            ["other detectors (V100 FPS)", "other detectors (A100 FPS)"] if number == 9 else []
        )
    for line in ax.get_lines():
        if line.get_gid().startswith("paper:YOLO"):
            assert line.get_linestyle() == "-" and line.get_marker() == "o"


def test_figure_1_is_drawn_as_in_the_paper_in_milliseconds_and_test_dev_ap() -> None:
    """Spot checks against the paper's Figure 1 itself: YOLOv7 at 161 FPS = 6.2 ms and 51.4% AP
    test-dev; YOLOv5-X (r6.1), with AP val only, at 83 FPS and 50.7%; P5 and P6 are separate curves."""
    lines = series_lines(speed_accuracy_figure(1))
    assert (pytest.approx(1000 / 161), 51.4) in lines["paper:YOLOv7 (ours):640"]
    assert (pytest.approx(1000 / 83), 50.7) in lines["paper:YOLOv5 (r6.1):640"]
    assert [y for _, y in lines["paper:YOLOv7 (ours):1280"]] == [54.9, 56.0, 56.6, 56.8]


def test_scale_of_the_x_axis_follows_the_range() -> None:
    assert speed_accuracy_figure(9).axes[0].get_xscale() == "log"  # 1.5 to 286 FPS
    assert speed_accuracy_figure(10).axes[0].get_xscale() == "linear"  # 34 to 286 FPS


CPU = "CPU, 2 cores, batch 1, 320 px"
GEN = "generated data, 320 px, 30 epochs"


def _reproductions() -> Reproductions:
    reps = Reproductions()
    reps.add(2, "yolov7", "fps", 3.1, CPU)
    reps.add(2, "yolov7", "ap_val", 41.5, GEN, spread=0.4, seeds=3)
    reps.add(2, "yolov7-tiny-silu", "fps", 19.0, CPU)
    reps.add(2, "yolov7-tiny-silu", "ap_val", 30.2, GEN)
    reps.add(2, "yolor-csp", "fps", 2.5, CPU)
    reps.add(2, "yolor-csp", "ap_test", 40.0, "COCO test-dev, 1 epoch")
    reps.add(2, "yolov7x", "fps", 1.2, CPU)  # no AP: cannot be placed
    reps.add(1, "yolov7", "ap_val", 99.0, GEN)  # Table 1: not in Figure 1
    return reps


def test_measured_points_from_reproductions_appear_with_labels_and_scale() -> None:
    fig = speed_accuracy_figure(1, _reproductions())
    ax = fig.axes[0]
    lines = series_lines(fig)
    both = f"speed: {CPU}; AP: {GEN}"
    assert sorted(lines[f"measured:{both}"]) == sorted([(1000 / 19.0, 30.2), (1000 / 3.1, 41.5)])
    assert lines[f"measured:speed: {CPU}; AP: COCO test-dev, 1 epoch"] == [(1000 / 2.5, 40.0)]
    assert drawn_paper_points(fig) == expected_paper_points(1)  # the paper's points are unchanged
    labels = {
        t.get_gid(): t.get_text() for t in ax.texts if (t.get_gid() or "").startswith("measured-label:")
    }
    assert labels == {f"measured-label:{n}": n for n in ("YOLOv7", "YOLOv7-tiny-SiLU", "YOLOR-CSP")}
    legend = " ".join(t.get_text().replace("\n", " ") for t in ax.get_legend().get_texts())
    assert f"yolov7lib, {both}" in legend
    assert "measured" in ax.get_xlabel()
    footnote = " ".join(t.get_text().replace("\n", " ") for t in fig.texts)
    assert "YOLOv7-X (no measured AP)" in footnote
    measured = [line for line in ax.get_lines() if (line.get_gid() or "").startswith("measured:")]
    paper_markers = {
        line.get_marker() for line in ax.get_lines() if (line.get_gid() or "").startswith("paper:")
    }
    assert all(line.get_linestyle() == "None" and line.get_marker() not in paper_markers for line in measured)
    assert len({line.get_marker() for line in measured}) == 2  # one style per scale
    assert ax.get_xscale() == "log"  # CPU milliseconds next to V100 milliseconds


def test_measured_points_from_a_plain_list() -> None:
    pts = [("YOLOv7-tiny", 0.45, 33.0), MeasuredPoint("other", 0.6, 30.0, "yolov7lib, CPU 2 cores", yerr=1.0)]
    fig = speed_accuracy_figure(11, pts, measured_scale="yolov7lib, CPU 2 cores")
    assert sorted(series_lines(fig)["measured:yolov7lib, CPU 2 cores"]) == [(0.45, 33.0), (0.6, 30.0)]
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "yolov7lib, CPU 2 cores" in legend
    footnote = " ".join(t.get_text().replace("\n", " ") for t in fig.texts)
    assert "YOLOv7-E6E (56.8% AP, quoted without a time)" in footnote


def test_bad_measured_points_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="need a scale"):
        speed_accuracy_figure(1, [("a", 10.0, 30.0)])
    with pytest.raises(ValueError, match="finite"):
        speed_accuracy_figure(1, [("a", float("nan"), 30.0)], measured_scale="x")
    with pytest.raises(ValueError, match="inference time"):
        speed_accuracy_figure(1, [("a", 0.0, 30.0)], measured_scale="x")
    with pytest.raises(ValueError, match="expected a MeasuredPoint"):
        speed_accuracy_figure(1, [("a", 1.0)], measured_scale="x")
    with pytest.raises(ValueError, match="not a speed/accuracy figure"):
        speed_accuracy_figure(2)


def test_speed_accuracy_pngs_have_the_requested_size_and_are_reproducible(tmp_path: Path) -> None:
    a = write_speed_accuracy_figure(9, tmp_path / "a.png", figsize=(7.0, 5.0), dpi=80)
    b = write_speed_accuracy_figure(9, tmp_path / "b.png", figsize=(7.0, 5.0), dpi=80)
    assert png_size(a) == (560, 400)
    assert a.read_bytes() == b.read_bytes()
    written = write_speed_accuracy_figures(tmp_path / "figs", _reproductions())
    assert sorted(written) == [1, 9, 10, 11]
    for number, path in written.items():
        assert path.name == f"figure{number}.png" and png_size(path) == (1100, 650)
    assert not list((tmp_path / "figs").glob(".*"))  # no temporary file left behind
    with pytest.raises(ValueError, match=r"\.png"):
        write_speed_accuracy_figure(1, tmp_path / "a.jpg")


def test_png_bytes_do_not_depend_on_the_users_matplotlibrc(tmp_path: Path) -> None:
    """A fresh process with a matplotlibrc that changes fonts, lines and dpi writes the same bytes."""
    rc = tmp_path / "matplotlibrc"
    rc.write_text(
        "font.size: 20\nlines.linewidth: 6\nsavefig.dpi: 33\naxes.grid: False\nfont.family: serif\n"
    )
    script = textwrap.dedent(
        """
        import sys
        from yolov7lib.report.figures import write_speed_accuracy_figure
        write_speed_accuracy_figure(10, sys.argv[1])
        """
    )
    env = {**os.environ, "MATPLOTLIBRC": str(rc), "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "rc.png")], check=True, env=env, cwd=tmp_path
    )
    write_speed_accuracy_figure(10, tmp_path / "here.png")
    assert (tmp_path / "rc.png").read_bytes() == (tmp_path / "here.png").read_bytes()


def test_house_style_is_matplotlibs_default_whatever_the_rc_says() -> None:
    """Inside house_style the settings are matplotlib's own defaults, not the caller's rc."""
    import matplotlib

    from yolov7lib.report.plotting import house_style

    keys = ("font.size", "lines.linewidth", "axes.grid", "axes.prop_cycle", "figure.facecolor", "font.family")
    with matplotlib.rc_context({"font.size": 20, "lines.linewidth": 6, "axes.grid": True}), house_style():
        assert {k: matplotlib.rcParams[k] for k in keys} == {k: matplotlib.rcParamsDefault[k] for k in keys}


def test_save_png_writes_no_software_chunk_and_cleans_up_after_a_failed_rename(
    tmp_path: Path, monkeypatch
) -> None:
    """save_png: no 'Software' text chunk (it names the matplotlib version), an upper-case .PNG is a
    PNG file name, and when the final rename fails the temporary file is removed."""
    from matplotlib.figure import Figure

    from yolov7lib.report import plotting

    fig = Figure(figsize=(1.0, 1.0), dpi=50)
    data = plotting.save_png(fig, tmp_path / "a.PNG").read_bytes()
    chunks, pos = [], 8
    while pos < len(data):  # PNG chunks: length, type, body, CRC
        n = int.from_bytes(data[pos : pos + 4], "big")
        chunks.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]))
        pos += 12 + n
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    assert not [body for kind, body in chunks if kind in (b"tEXt", b"iTXt", b"zTXt") and b"Software" in body]

    def fail(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(plotting.os, "replace", fail)
    with pytest.raises(OSError, match="rename failed"):
        plotting.save_png(fig, tmp_path / "b.png")
    assert [p.name for p in tmp_path.iterdir()] == ["a.PNG"]


# --------------------------------------------------------------------------------------------------
# Figures 2-7: hand-built node lists (the adapter from built models comes with the models)
# --------------------------------------------------------------------------------------------------


def elan(p: str = "", src: str = "in", c: int = 64, stacks: int = 2, rep: tuple[str, ...] = (), group=()):
    """ELAN (Figure 2c): two 1x1 convs, stacks of two 3x3 convs on the second, concatenation of both
    1x1 outputs and every stack output, 1x1 transition."""
    nodes = [
        Node(f"{p}a", "1x1 conv", "conv1x1", (src,), c, group),
        Node(f"{p}b", "1x1 conv", "conv1x1", (src,), c, group),
    ]
    x, outs, k = f"{p}b", [], 0
    for s in range(stacks):
        for j in range(2):
            kind = rep[k] if k < len(rep) else "conv3x3"
            nodes.append(Node(f"{p}s{s}c{j}", "3x3 conv", kind, (x,), c, group))
            x, k = f"{p}s{s}c{j}", k + 1
        outs.append(x)
    nodes.append(
        Node(f"{p}cat", "concat", "concat", (*reversed(outs), f"{p}b", f"{p}a"), (2 + stacks) * c, group)
    )
    nodes.append(Node(f"{p}t", "1x1 transition", "transition", (f"{p}cat",), 2 * c, group))
    return nodes


def elan_graph() -> list[Node]:
    return [Node("in", "input", "input", (), 128), *elan(), Node("out", "output", "output", ("t",))]


def eelan_graph(cardinality: int) -> list[Node]:
    """E-ELAN as the reference's E6E builds it: `cardinality` ELAN groups on one input, summed."""
    nodes = [Node("in", "input", "input", (), 256)]
    for g in range(cardinality):
        nodes += elan(f"g{g}.", group=("E-ELAN", f"cardinality {g + 1}"))
    nodes.append(Node("merge", "+", "add", tuple(f"g{g}.t" for g in range(cardinality)), group="E-ELAN"))
    return [*nodes, Node("out", "output", "output", ("merge",))]


def eelan_paper_graph() -> list[Node]:
    """E-ELAN as Figure 2 (d) draws it: group convolutions expand the cardinality, the features are
    shuffled and merged before the transition layer."""
    g = "E-ELAN (g=2)"
    nodes = [
        Node("in", "input", "input", (), "c"),
        Node("a", "1x1 gconv", "group-conv", ("in",), "2c", g),
        Node("b", "1x1 gconv", "group-conv", ("in",), "2c", g),
    ]
    x = "b"
    for k in range(4):
        nodes.append(Node(f"c{k}", "3x3 gconv", "group-conv", (x,), "2c", g))
        x = f"c{k}"
    return [
        *nodes,
        Node("cat", "concat", "concat", ("c3", "c1", "b", "a"), "8c", g),
        Node("shuffle", "shuffle cardinality", "shuffle", ("cat",), "8c", g),
        Node("merge", "merge cardinality", "add", ("shuffle",), "4c", g),
        Node("t", "1x1 transition", "transition", ("merge",), "2c"),
    ]


def stacked_elan(rep: tuple[str, ...]) -> list[Node]:
    """The 3-stacked ELAN of Figure 6 with RepConv / RepConvN at the given 3x3 positions."""
    return [
        Node("in", "input", "input"),
        *elan(stacks=3, rep=rep, group="3-stacked ELAN"),
        Node("out", "output", "output", ("t",)),
    ]


def scaling(stacks: int, out: str) -> list[Node]:
    """Figure 3: a concatenation-based block of `stacks` computational blocks and its transition."""
    nodes, x, outs = [Node("in", "input", "input")], "in", ["in"]
    for s in range(stacks):
        nodes.append(Node(f"b{s}", "block", "block", (x,), "c"))
        x = f"b{s}"
        outs.append(x)
    return [
        *nodes,
        Node("cat", "concat", "concat", tuple(outs), f"{stacks + 1}c"),
        Node("t", "transition", "transition", ("cat",), out),
    ]


def dark(reverse: bool) -> list[Node]:
    """Figure 7: dark block (1x1 then 3x3, residual) and reversed dark block (3x3 then 1x1)."""
    first, second = (("3x3 conv", "conv3x3"), ("1x1 conv", "conv1x1"))[:: -1 if not reverse else 1]
    return [
        Node("in", "input", "input", (), "2c"),
        Node("c1", first[0], first[1], ("in",), "c"),
        Node("c2", second[0], second[1], ("c1",), "2c"),
        Node("add", "+", "add", ("c2", "in")),
        Node("out", "output", "output", ("add",)),
    ]


def heads(mode: str) -> list[Node]:
    """Figure 5: (a) one head, (b) lead + auxiliary heads, (c) independent assigners, (d) lead guided,
    (e) coarse-to-fine lead guided."""
    nodes = [
        Node("img", "image", "input"),
        Node("bb", "backbone", "block", ("img",)),
        Node("fpn", "FPN", "block", ("bb",)),
        Node("lead", "lead head", "lead-head", ("fpn",)),
        Node("gt", "ground truth", "input"),
    ]
    if mode == "a":
        return [
            *nodes,
            Node("as", "assigner", "assigner", ("lead", "gt")),
            Node("loss", "loss", "loss", ("lead", "as")),
        ]
    nodes.append(Node("aux", "auxiliary head", "aux-head", ("fpn",)))
    if mode in ("b", "c"):
        return [
            *nodes,
            Node("as1", "assigner", "assigner", ("lead", "gt")),
            Node("as2", "assigner", "assigner", ("aux", "gt")),
            Node("l1", "lead loss", "loss", ("lead", "as1")),
            Node("l2", "aux loss", "loss", ("aux", "as2")),
        ]
    guided = Node("as", "lead guided assigner", "assigner", ("lead", "gt"))
    if mode == "d":
        labels = [Node("fine", "soft label", "label", ("as",))]
        coarse = "fine"
    else:
        labels = [
            Node("fine", "fine label", "label", ("as",)),
            Node("coarse", "coarse label", "label", ("as",)),
        ]
        coarse = "coarse"
    return [
        *nodes,
        guided,
        *labels,
        Node("l1", "lead loss", "loss", ("lead", "fine")),
        Node("l2", "aux loss", "loss", ("aux", coarse)),
    ]


RC_ALL = ("RepConv",) * 6
RC_N = ("RepConvN", "conv3x3") * 3
GRAPHS = {
    "elan": elan_graph(),
    "e-elan": eelan_graph(2),
    "e-elan-4": eelan_graph(4),  # 35 nodes
    "e-elan-paper": eelan_paper_graph(),
    "3-stacked-repconv": stacked_elan(RC_ALL),
    "3-stacked-repconvn": stacked_elan(RC_N),
    "scaling-a": scaling(2, "2c"),
    "scaling-b": scaling(4, "2c"),
    "scaling-c": scaling(4, "3c"),
    "dark": dark(False),
    "reversed-dark": dark(True),
    **{f"heads-{m}": heads(m) for m in "abcde"},
}


def naive_depths(nodes: list[Node]) -> dict[str, int]:
    """Longest path from a source by repeated relaxation (Bellman-Ford style)."""
    d = {n.id: 0 for n in nodes}
    for _ in nodes:
        for n in nodes:
            for i in n.inputs:
                d[n.id] = max(d[n.id], d[i] + 1)
    return d


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_layout_puts_every_node_below_its_inputs(name: str) -> None:
    nodes = GRAPHS[name]
    lay = layout(nodes)
    assert lay.depth == naive_depths(nodes) == depths(nodes)
    for n in nodes:
        for i in n.inputs:
            assert lay.depth[n.id] > lay.depth[i]
            assert lay.xy[n.id][1] < lay.xy[i][1]


def _box(lay, i: str, pad: float = 0.0) -> tuple[float, float, float, float]:
    (x, y), (w, h) = lay.xy[i], lay.size[i]
    return (x - w / 2 - pad, y - h / 2 - pad, x + w / 2 + pad, y + h / 2 + pad)


def _segment_hits_box(p, q, box) -> bool:
    """Whether segment p-q meets the open rectangle `box` (Liang-Barsky clipping)."""
    x0, y0, x1, y1 = box
    t0, t1 = 0.0, 1.0
    dx, dy = q[0] - p[0], q[1] - p[1]
    for pk, qk in ((-dx, p[0] - x0), (dx, x1 - p[0]), (-dy, p[1] - y0), (dy, y1 - p[1])):
        if pk == 0:
            if qk <= 0:
                return False
        else:
            t = qk / pk
            if pk < 0:
                t0 = max(t0, t)
            else:
                t1 = min(t1, t)
    return t1 - t0 > 1e-9


def _cross(p1, p2, q1, q2) -> bool:
    """Proper crossing of two segments."""

    def orient(a, b, c):
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    d1, d2 = orient(q1, q2, p1), orient(q1, q2, p2)
    d3, d4 = orient(p1, p2, q1), orient(p1, p2, q2)
    return d1 * d2 < -1e-12 and d3 * d4 < -1e-12


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_layout_is_readable_no_overlapping_boxes_no_arrow_through_a_box(name: str) -> None:
    nodes = GRAPHS[name]
    lay = layout(nodes)
    ids = [n.id for n in nodes]
    for a in range(len(ids)):
        for b in range(a + 1, len(ids)):
            ba, bb = _box(lay, ids[a], 0.05), _box(lay, ids[b], 0.05)
            assert not (ba[0] < bb[2] and bb[0] < ba[2] and ba[1] < bb[3] and bb[1] < ba[3]), (ids[a], ids[b])
    assert Counter((e.src, e.dst) for e in lay.edges) == Counter((i, n.id) for n in nodes for i in n.inputs)
    for e in lay.edges:
        assert e.points[0][1] == pytest.approx(_box(lay, e.src)[1])  # leaves its source at the bottom
        assert e.points[-1][1] == pytest.approx(_box(lay, e.dst)[3])  # enters its target at the top
        for p, q in zip(e.points, e.points[1:], strict=False):
            for other in ids:
                if other not in (e.src, e.dst):
                    assert not _segment_hits_box(p, q, _box(lay, other)), (e.src, e.dst, other)


@pytest.mark.parametrize("name", ["elan", "e-elan", "e-elan-4", "3-stacked-repconv", "scaling-c", "dark"])
def test_blocks_of_the_paper_are_drawn_without_crossing_arrows(name: str) -> None:
    lay = layout(GRAPHS[name])
    segs = [(k, p, q) for k, e in enumerate(lay.edges) for p, q in zip(e.points, e.points[1:], strict=False)]
    for k1, p1, q1 in segs:
        for k2, p2, q2 in segs:
            if k1 < k2:
                assert not _cross(p1, q1, p2, q2), (lay.edges[k1], lay.edges[k2])


def test_group_frames_hold_their_members_and_siblings_do_not_overlap() -> None:
    nodes = GRAPHS["e-elan-4"]
    lay = layout(nodes)
    assert set(lay.groups) == {("E-ELAN",)} | {("E-ELAN", f"cardinality {g}") for g in range(1, 5)}
    for g, (x0, y0, x1, y1) in lay.groups.items():
        for n in nodes:
            if n.group[: len(g)] == g:
                bx0, by0, bx1, by1 = _box(lay, n.id)
                assert x0 < bx0 and bx1 < x1 and y0 < by0 and by1 < y1
    inner = sorted(v for g, v in lay.groups.items() if len(g) == 2)
    for a, b in itertools.pairwise(inner):
        assert a[2] < b[0]
    outer = lay.groups[("E-ELAN",)]
    assert all(outer[0] < f[0] and f[2] < outer[2] for f in inner)


def test_malformed_node_lists_are_clear_errors() -> None:
    with pytest.raises(DiagramError, match=r"cycle: 'a' -> 'b' -> 'c' -> 'a'"):
        layout(
            [
                Node("a", kind="conv", inputs=("c",)),
                Node("b", kind="conv", inputs=("a",)),
                Node("c", kind="conv", inputs=("b",)),
            ]
        )
    with pytest.raises(DiagramError, match="'x' reads itself"):
        layout([Node("x", kind="conv", inputs=("x",))])
    with pytest.raises(DiagramError, match="'b' reads unknown input id 'nope'"):
        layout([Node("a", kind="input"), Node("b", kind="conv", inputs=("a", "nope"))])
    with pytest.raises(DiagramError, match="duplicate node id 'a'"):
        layout([Node("a", kind="input"), Node("a", kind="conv")])
    with pytest.raises(DiagramError, match=r"unknown kind 'conv5x5'.*RepConvN"):
        layout([Node("a", kind="conv5x5")])
    with pytest.raises(DiagramError, match="at least one node"):
        layout([])
    with pytest.raises(DiagramError, match="non-empty strings"):
        layout([Node("", kind="input")])
    with pytest.raises(DiagramError, match="panel 'bad'"):
        diagram_figure({"ok": elan_graph(), "bad": [{"id": "a", "kind": "conv", "inputs": ["zz"]}]})
    with pytest.raises(DiagramError, match="node 0"):
        diagram_figure([{"id": "a", "colour": "red"}])


def test_diagram_draws_every_node_edge_and_repconv_marker(tmp_path: Path) -> None:
    panels = {"(a) RepConv": GRAPHS["3-stacked-repconv"], "(b) RepConvN": GRAPHS["3-stacked-repconvn"]}
    fig = diagram_figure(panels, title="Figure 6")
    for ax, (name, nodes) in zip(fig.axes, panels.items(), strict=True):
        assert ax.get_title() == name
        gids = Counter((p.get_gid() or "").split(":")[0] for p in ax.patches)
        assert gids["node"] == len(nodes)
        assert gids["edge"] == sum(len(n.inputs) for n in nodes)
        texts = {t.get_gid(): t.get_text() for t in ax.texts if t.get_gid()}
        assert texts == {f"label:{n.id}": n.text for n in nodes}
        markers = {
            p.get_gid()[7:]: p.get_facecolor()
            for p in ax.patches
            if (p.get_gid() or "").startswith("marker:")
        }
        rep = {n.id: n.kind for n in nodes if n.kind in ("RepConv", "RepConvN")}
        assert set(markers) == set(rep)
        for i, kind in rep.items():  # filled circle for RepConv, hollow for RepConvN
            assert (markers[i][:3] == (1.0, 1.0, 1.0)) == (kind == "RepConvN")
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("RepConvN" in t for t in legend) and any(t.startswith("RepConv (") for t in legend)

    a = write_diagram(panels, tmp_path / "a.png", title="Figure 6")
    b = write_diagram(panels, tmp_path / "b.png", title="Figure 6")
    assert a.read_bytes() == b.read_bytes()
    w, h = png_size(a)
    assert (w, h) == tuple(round(v * fig.dpi) for v in fig.get_size_inches())
    content = sum(lay.extent[2] - lay.extent[0] for lay in map(layout, panels.values()))
    assert w >= content * fig.dpi  # one data unit is one inch: the panels are not squeezed


def test_a_40_node_diagram_stays_legible() -> None:
    nodes = eelan_graph(4) + [Node(f"x{k}", "1x1 conv", "conv1x1", ("out",)) for k in range(5)]
    assert len(nodes) == 40
    fig = diagram_figure(nodes)
    w, h = fig.get_size_inches()
    assert 8 < w < 25 and 8 < h < 20  # grows with the graph, text keeps its size
    assert {t.get_fontsize() for t in fig.axes[0].texts if (t.get_gid() or "").startswith("label:")} == {8.0}


def test_node_text_puts_the_channels_under_a_boxs_label_and_beside_a_bars() -> None:
    """Node.text: a box prints its channels on a second line, a flat bar or a circle on the label's
    line; no channels (None or "") prints the label alone, and no label prints the kind."""
    assert Node("a", "1x1 conv", "conv1x1", channels=64).text == "1x1 conv\n64"
    assert Node("c", "concat", "concat", channels="4c").text == "concat 4c"
    assert Node("m", "merge", "add", channels="2c").text == "merge 2c"
    assert Node("a", "1x1 conv", "conv1x1", channels="").text == "1x1 conv"
    assert Node("p", kind="pool").text == "pool"


def test_an_empty_group_name_is_no_group() -> None:
    """group="" (like None) puts a node in no group: no frame is drawn for it."""
    nodes = [Node("in", kind="input", group=""), Node("c", kind="conv", inputs=("in",), group=None)]
    assert [n.group for n in nodes] == [(), ()]
    assert layout(nodes).groups == {}


def test_every_label_fits_inside_its_box_with_a_margin() -> None:
    """The drawn text measured by the renderer: every label lies inside its box with at least 0.1 in
    on either side and 0.075 in above and below, for long labels and labels of up to four lines."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    mixed = [
        Node("in", "input", "input", (), 128),
        Node("a", "RepConv (no identity: widths differ)", "RepConv", ("in",), 256),
        Node("b", "a label\nover three\nlines", "block", ("in",), 64),
        Node("c", "concatenation of both", "concat", ("a", "b"), "8c"),
        Node("d", "+", "add", ("c",)),
        Node("e", "merge cardinality", "add", ("d",), "4c"),
    ]
    for nodes in (mixed, GRAPHS["e-elan-paper"], GRAPHS["heads-e"]):
        fig = diagram_figure(nodes)
        renderer = FigureCanvasAgg(fig).get_renderer()
        ax = fig.axes[0]
        boxes = {p.get_gid()[5:]: p.get_window_extent(renderer) for p in ax.patches
                 if (p.get_gid() or "").startswith("node:")}  # fmt: skip
        labels = {t.get_gid()[6:]: t.get_window_extent(renderer) for t in ax.texts
                  if (t.get_gid() or "").startswith("label:")}  # fmt: skip
        assert set(labels) == set(boxes) == {n.id for n in nodes}
        for i, t in labels.items():
            b = boxes[i]
            assert min(t.x0 - b.x0, b.x1 - t.x1) >= 0.1 * fig.dpi, i
            assert min(t.y0 - b.y0, b.y1 - t.y1) >= 0.075 * fig.dpi, i


def test_crossings_count_the_pairs_of_edges_that_cross() -> None:
    """Layout.crossings on the complete bipartite graph of 3 + 3 nodes: in any order each pair of
    upper nodes and each pair of lower nodes gives exactly one crossing, 3 * 3 = 9 (edges that only
    share an end do not cross)."""
    top = [Node(f"t{k}", kind="input") for k in range(3)]
    bottom = [Node(f"b{k}", kind="conv", inputs=("t0", "t1", "t2")) for k in range(3)]
    assert layout(top + bottom).crossings == 9
    assert layout(GRAPHS["dark"]).crossings == 0


def test_arrow_ends_are_spread_evenly_along_the_boxs_edge() -> None:
    """Where a box has k incoming (outgoing) arrows, their ends are k evenly spaced points inside its
    top (bottom) edge, centred on the box."""
    for name, nodes in GRAPHS.items():
        lay = layout(nodes)
        for end, attr in ((-1, "dst"), (0, "src")):
            ends: dict[str, list[float]] = {}
            for e in lay.edges:
                ends.setdefault(getattr(e, attr), []).append(e.points[end][0])
            for i, xs in ends.items():
                if len(xs) < 2:
                    continue
                xs = sorted(xs)
                (cx, _), (w, _) = lay.xy[i], lay.size[i]
                steps = [b - a for a, b in itertools.pairwise(xs)]
                assert sum(xs) / len(xs) == pytest.approx(cx), (name, i)
                assert steps == pytest.approx([steps[0]] * len(steps)) and steps[0] > 0, (name, i)
                assert cx - w / 2 < xs[0] and xs[-1] < cx + w / 2, (name, i)


def test_more_columns_than_panels_draw_one_row() -> None:
    """`ncols` larger than the number of panels is one row, as by default."""
    panels = {"(a)": GRAPHS["dark"], "(b)": GRAPHS["reversed-dark"]}
    wide = diagram_figure(panels, ncols=5)
    assert tuple(wide.get_size_inches()) == tuple(diagram_figure(panels).get_size_inches())
    assert [ax.get_title() for ax in wide.axes] == ["(a)", "(b)"]


def test_panels_show_their_whole_diagram_at_one_inch_per_unit() -> None:
    """Every panel's view holds its diagram's extent, and one data unit is one inch on the page in
    both directions (the axes' size in inches equals the span of its view limits)."""
    panels = {"(a)": GRAPHS["e-elan"], "(b)": GRAPHS["dark"], "(c)": GRAPHS["heads-e"]}
    fig = diagram_figure(panels, ncols=2, title="t")
    width, height = fig.get_size_inches()
    for ax, nodes in zip(fig.axes, panels.values(), strict=True):
        x0, y0, x1, y1 = layout(nodes).extent
        (a, b), (c, d) = ax.get_xlim(), ax.get_ylim()
        assert a <= x0 and x1 <= b and c <= y0 and y1 <= d
        pos = ax.get_position()
        assert b - a == pytest.approx(pos.width * width) and d - c == pytest.approx(pos.height * height)


def test_long_titles_fit_the_page_and_do_not_overlap() -> None:
    """Titles wider than their narrow diagrams (Figure 7's two three-box blocks) widen the page: drawn
    by Agg, the figure title and every panel title lie inside the page and the panel titles apart."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    panels = {
        "dark block (BottleneckCSPA), 41,216 params": GRAPHS["dark"],
        "reversed dark block (RBottleneckCSPA), 41,216 params": GRAPHS["dark"],
    }
    fig = diagram_figure(
        panels, title="Figure 7: dark block and reversed dark block (CSPDarknet of YOLOR-W6)"
    )
    renderer = FigureCanvasAgg(fig).get_renderer()
    width = fig.get_size_inches()[0] * fig.dpi
    titles = [fig.texts[0], *(ax.title for ax in fig.axes)]
    boxes = [t.get_window_extent(renderer) for t in titles]
    assert all(t.get_text() for t in titles)
    assert all(0 <= b.x0 and b.x1 <= width for b in boxes), [(b.x0, b.x1, width) for b in boxes]
    assert boxes[1].x1 <= boxes[2].x0  # the two panel titles side by side, apart


# --------------------------------------------------------------------------------------------------
# Figure 8
# --------------------------------------------------------------------------------------------------


def naive_objectness(level: torch.Tensor, b: int) -> np.ndarray:
    _, na, h, w, _ = level.shape
    out = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            out[i, j] = max(1.0 / (1.0 + math.exp(-float(level[b, a, i, j, 4]))) for a in range(na))
    return out


def raw_outputs(
    seed: int, size: int = 64, strides=(8, 16, 32), aux: bool = True, nc: int = 2
) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lead = [torch.randn(2, 3, size // s, size // s, 5 + nc, generator=g) * 3 for s in strides]
    return lead + (
        [torch.randn(2, 3, size // s, size // s, 5 + nc, generator=g) * 3 for s in strides] if aux else []
    )


def test_objectness_map_is_the_max_over_anchors_of_the_sigmoid() -> None:
    level = raw_outputs(0)[0]
    np.testing.assert_allclose(objectness_map(level, 1), naive_objectness(level, 1), rtol=1e-6, atol=1e-7)


def test_lead_and_auxiliary_levels_are_told_apart() -> None:
    p6 = raw_outputs(1, 128, (8, 16, 32, 64))
    assert [len(x) for x in split_lead_aux(p6)] == [4, 4]
    assert [len(x) for x in split_lead_aux(raw_outputs(1, aux=False))] == [3, 0]
    assert [len(x) for x in split_lead_aux(raw_outputs(1, 128, (8, 16, 32, 64), aux=False))] == [4, 0]
    assert [len(x) for x in split_lead_aux(p6, nl=8)] == [8, 0]
    with pytest.raises(ValueError, match="cannot be 3 lead levels"):
        split_lead_aux(p6, nl=3)
    with pytest.raises(ValueError, match=r"\(B, na, H, W, 5 \+ nc\)"):
        split_lead_aux([torch.zeros(1, 3, 8, 8)])
    with pytest.raises(ValueError, match="share the batch size"):
        split_lead_aux([torch.zeros(1, 3, 8, 8, 7), torch.zeros(2, 3, 4, 4, 7)])


def test_objectness_figure_draws_the_maps_of_each_method_head_and_level(tmp_path: Path) -> None:
    methods = {
        "base": raw_outputs(2, aux=False),
        "independent": raw_outputs(3),
        "coarse-to-fine": raw_outputs(4),
    }
    image = torch.randint(
        0, 256, (2, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(5)
    )
    fig = objectness_figure(methods, image, index=1)
    drawn = {im.get_gid(): im.get_array() for ax in fig.axes for im in ax.get_images() if im.get_gid()}
    expected = {}
    for name, outs in methods.items():
        lead, aux = outs[:3], outs[3:]
        for head, maps in (("lead", lead), ("aux", aux)):
            for j, level in enumerate(maps):
                expected[f"objectness:{name}:{head}:{j}"] = naive_objectness(level, 1)
        np.testing.assert_allclose(
            drawn[f"image:{name}"], image[1].permute(1, 2, 0).numpy() / 255.0, rtol=1e-6
        )
    assert set(drawn) - {f"image:{n}" for n in methods} == set(expected)
    for gid, arr in expected.items():
        np.testing.assert_allclose(np.asarray(drawn[gid]), arr, rtol=1e-6, atol=1e-7)
    # every map covers the whole image; the missing auxiliary head of "base" is said, not drawn
    for ax in fig.axes:
        for im in ax.get_images():
            assert tuple(im.get_extent()) == (0.0, 64.0, 64.0, 0.0)
    assert sum("no auxiliary head" in t.get_text() for ax in fig.axes for t in ax.texts) == 3
    titles = [ax.get_title() for ax in fig.axes]
    assert "auxiliary head, P3 (stride 8)" in titles and "lead head, P5 (stride 32)" in titles
    assert [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()] == [*methods, "objectness"]  # + colour bar

    scales = {im.get_clim() for ax in fig.axes for im in ax.get_images() if "objectness" in str(im.get_gid())}
    assert scales == {(0.0, 1.0)}
    auto = objectness_figure(methods, image, index=1, vmax=None)  # one shared scale: the largest value
    top = max(float(arr.max()) for arr in expected.values())
    scales = {
        im.get_clim() for ax in auto.axes for im in ax.get_images() if "objectness" in str(im.get_gid())
    }
    assert len(scales) == 1 and scales.pop() == pytest.approx((0.0, top))

    a = write_objectness_figure(methods, image, tmp_path / "a.png", index=1)
    b = write_objectness_figure(methods, image, tmp_path / "b.png", index=1)
    assert a.read_bytes() == b.read_bytes()
    assert png_size(a) == tuple(round(v * fig.dpi) for v in fig.get_size_inches())


def test_objectness_figure_prints_the_models_scale() -> None:
    outs = [torch.zeros(1, 3, 8, 8, 6)]
    image = torch.zeros(1, 3, 64, 64)
    text = " ".join(t.get_text() for t in objectness_figure(outs, image, scale="proxy, 2 epochs").texts)
    assert "Models: proxy, 2 epochs." in text
    assert "Models:" not in " ".join(t.get_text() for t in objectness_figure(outs, image).texts)


def test_objectness_figure_rejects_bad_images_and_grids() -> None:
    outs = raw_outputs(6)
    with pytest.raises(ValueError, match=r"float pixels must lie in \[0, 1\]"):
        objectness_figure(outs, torch.full((3, 64, 64), 255.0))
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        objectness_figure(outs, torch.zeros(4, 64, 64))
    with pytest.raises(ValueError, match="does not tile"):
        objectness_figure(outs, np.zeros((64, 96, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="method 'm'"):
        objectness_figure({"m": [torch.zeros(2, 3, 8, 8)]}, np.zeros((64, 64), dtype=np.uint8))
    with pytest.raises(IndexError):
        objectness_figure(outs, np.zeros((64, 64, 3), dtype=np.uint8), index=2)
