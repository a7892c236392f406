"""Block diagrams of architectures (Figures 2-7) from a generic list of nodes.

A diagram is a list of :class:`Node` (id, label, kind, the ids it reads, channels, an optional group
path). :func:`layout` places it in layers by topological depth (a node sits one layer below its
deepest input), routes edges that skip layers through placeholder points so that no arrow crosses a
box, orders each layer to reduce crossings (barycentre sweeps, keeping the members of a group next to
each other), and gives every box its coordinates in inches. :func:`diagram_figure` draws one or more
such diagrams side by side with matplotlib patches: boxes coloured by kind, arrows, dashed frames for
groups, RepConv / RepConvN marked by blue circles as in the paper's Figure 6, and a legend of kinds.

Nothing here knows about models: the adapter from a built model to nodes belongs with the models.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Patch, Rectangle
from matplotlib.path import Path as MplPath


class DiagramError(ValueError):
    """A malformed node list: duplicate or unknown ids, a cycle, an unknown kind."""


@dataclass(frozen=True)
class KindStyle:
    """How a node kind is drawn: its legend text, fill colour, shape (``box``, ``flat`` for a thin
    operation bar, ``circle``) and the paper's RepConv marker (``filled`` / ``hollow`` blue circle)."""

    legend: str
    color: str
    shape: str = "box"
    marker: str = ""


KINDS: dict[str, KindStyle] = {
    "input": KindStyle("input / output", "#ffffff"),
    "output": KindStyle("input / output", "#ffffff"),
    "conv1x1": KindStyle("1x1 convolution", "#cfe2f3"),
    "conv3x3": KindStyle("3x3 convolution", "#9fc5e8"),
    "conv": KindStyle("convolution", "#cfe2f3"),
    "group-conv": KindStyle("group convolution", "#b4a7d6"),
    "RepConv": KindStyle("RepConv (3x3 + 1x1 + identity)", "#9fc5e8", marker="filled"),
    "RepConvN": KindStyle("RepConvN (3x3 + 1x1, no identity)", "#9fc5e8", marker="hollow"),
    "transition": KindStyle("transition layer", "#b6d7a8"),
    "block": KindStyle("computational block", "#fff2cc"),
    "pool": KindStyle("pooling / down-sampling", "#d9d9d9"),
    "upsample": KindStyle("up-sampling", "#d9d9d9"),
    "concat": KindStyle("concatenation", "#f9cb9c", shape="flat"),
    "add": KindStyle("element-wise addition", "#f9cb9c", shape="circle"),
    "shuffle": KindStyle("shuffle cardinality", "#ea9999", shape="flat"),
    "head": KindStyle("detection head", "#d5a6bd"),
    "lead-head": KindStyle("lead head", "#c27ba0"),
    "aux-head": KindStyle("auxiliary head", "#ead1dc"),
    "assigner": KindStyle("label assigner", "#ffe599"),
    "label": KindStyle("labels (coarse / fine)", "#fce5cd"),
    "loss": KindStyle("loss", "#e06666"),
}

NODE_KINDS: tuple[str, ...] = tuple(KINDS)

# Geometry, in inches (one data unit of a diagram's axes is one inch).
BOX_HEIGHT = 0.5
FLAT_HEIGHT = 0.28
CIRCLE_DIAMETER = 0.34
MIN_BOX_WIDTH = 1.0
CHAR_WIDTH = 0.068  # average width of one character at FONT_SIZE
FONT_SIZE = 8.0
LAYER_GAP = 0.55  # vertical space between the boxes of consecutive layers
NODE_GAP = 0.3  # horizontal space between neighbouring boxes
DUMMY_WIDTH = 0.12  # width reserved for an edge passing through a layer
GROUP_PAD = 0.12  # space between a group's frame and the boxes (or frames) inside it


@dataclass(frozen=True)
class Node:
    """One node of a diagram: a layer or an operation of the paper's figures.

    `kind` is one of :data:`NODE_KINDS` (it sets the colour and shape), `label` the text in the box
    (the kind's name if empty), `inputs` the ids of the nodes it reads, `channels` an output width
    (a number from a model, or a symbol such as ``"2c"``) printed under the label, and `group` the
    block it belongs to (a name, or a path of names for nested blocks such as an E-ELAN's groups).
    """

    id: str
    label: str = ""
    kind: str = "block"
    inputs: tuple[str, ...] = ()
    channels: int | str | None = None
    group: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.inputs, str):
            object.__setattr__(self, "inputs", (self.inputs,))
        else:
            object.__setattr__(self, "inputs", tuple(self.inputs))
        if isinstance(self.group, str):
            object.__setattr__(self, "group", (self.group,) if self.group else ())
        elif self.group is None:
            object.__setattr__(self, "group", ())
        else:
            object.__setattr__(self, "group", tuple(self.group))

    @property
    def text(self) -> str:
        """The text drawn in the box: the label and, on a second line, the channels."""
        label = self.label or self.kind
        if self.channels is None or self.channels == "":
            return label
        sep = " " if KINDS[self.kind].shape != "box" else "\n"
        return f"{label}{sep}{self.channels}"


def as_nodes(items: Iterable[Node | Mapping[str, Any]]) -> list[Node]:
    """Nodes from :class:`Node` objects or plain mappings with the same fields (e.g. read from JSON)."""
    out = []
    for i, item in enumerate(items):
        if isinstance(item, Node):
            out.append(item)
        elif isinstance(item, Mapping):
            try:
                out.append(Node(**item))
            except TypeError as err:
                raise DiagramError(f"node {i}: {err}") from None
        else:
            raise DiagramError(f"node {i}: expected a Node or a mapping, got {type(item).__name__}")
    return out


def validate(nodes: Sequence[Node]) -> dict[str, Node]:
    """The nodes by id, after checking the list: at least one node, string ids without duplicates,
    known kinds, inputs that name other nodes of the list, no cycle. DiagramError otherwise."""
    if not nodes:
        raise DiagramError("a diagram needs at least one node")
    by_id: dict[str, Node] = {}
    for n in nodes:
        if not isinstance(n.id, str) or not n.id:
            raise DiagramError(f"node ids must be non-empty strings, got {n.id!r}")
        if n.id in by_id:
            raise DiagramError(f"duplicate node id {n.id!r}")
        if n.kind not in KINDS:
            raise DiagramError(f"node {n.id!r}: unknown kind {n.kind!r}; kinds: {', '.join(KINDS)}")
        by_id[n.id] = n
    for n in nodes:
        for src in n.inputs:
            if src == n.id:
                raise DiagramError(f"cycle: node {n.id!r} reads itself")
            if src not in by_id:
                raise DiagramError(f"node {n.id!r} reads unknown input id {src!r}")
    cycle = _find_cycle(by_id)
    if cycle:
        raise DiagramError("cycle: " + " -> ".join(repr(i) for i in cycle))
    return by_id


def _find_cycle(by_id: Mapping[str, Node]) -> list[str]:
    """One cycle of the graph as a list of ids (first id repeated at the end), or [] if acyclic."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    order = {i: k for k, i in enumerate(by_id)}
    for start in by_id:
        if state.get(start):
            continue
        path: list[str] = []
        stack: list[tuple[str, int]] = [(start, 0)]
        while stack:
            node, i = stack.pop()
            if i == 0:
                state[node] = 1
                path.append(node)
            inputs = by_id[node].inputs
            if i < len(inputs):
                stack.append((node, i + 1))
                nxt = inputs[i]
                if state.get(nxt) == 1:
                    cyc = path[path.index(nxt) :][::-1]  # in the direction of the data flow
                    first = min(range(len(cyc)), key=lambda k: order[cyc[k]])  # start at the first listed
                    cyc = cyc[first:] + cyc[:first]
                    return [*cyc, cyc[0]]
                if not state.get(nxt):
                    stack.append((nxt, 0))
            else:
                state[node] = 2
                path.pop()
    return []


def depths(nodes: Sequence[Node]) -> dict[str, int]:
    """Topological depth of every node: 0 for a node without inputs, else one more than its deepest
    input (the longest path from a source)."""
    by_id = validate(nodes)
    depth: dict[str, int] = {}

    def visit(i: str) -> int:
        # iterative longest path (graphs are small, but avoid recursion limits on long chains)
        stack = [i]
        while stack:
            top = stack[-1]
            pending = [s for s in by_id[top].inputs if s not in depth]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            depth[top] = 1 + max((depth[s] for s in by_id[top].inputs), default=-1)
        return depth[i]

    for i in by_id:
        if i not in depth:
            visit(i)
    return {i: depth[i] for i in by_id}


@dataclass(frozen=True)
class Edge:
    """One arrow: from node `src` to node `dst` through `points` (inches, start to end)."""

    src: str
    dst: str
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Layout:
    """Where everything of one diagram goes, in inches: box centres `xy` and sizes `size` by node id,
    the layer (`depth`) and rank within the layer (`rank`) of every node, the routed `edges`, the
    frame of every group path (``(x0, y0, x1, y1)``), and the overall `extent` ``(x0, y0, x1, y1)``.
    Depth grows downwards: layer ``d`` is drawn at ``y = -d * pitch``, the pitch being the tallest
    box plus :data:`LAYER_GAP`."""

    nodes: dict[str, Node]
    depth: dict[str, int]
    rank: dict[str, int]
    xy: dict[str, tuple[float, float]]
    size: dict[str, tuple[float, float]]
    edges: tuple[Edge, ...]
    groups: dict[tuple[str, ...], tuple[float, float, float, float]]
    extent: tuple[float, float, float, float]
    crossings: int = 0


def _box_size(node: Node) -> tuple[float, float]:
    style = KINDS[node.kind]
    lines = node.text.split("\n")
    width = max(len(line) for line in lines) * CHAR_WIDTH + 0.3
    if style.shape == "circle":
        return (CIRCLE_DIAMETER, CIRCLE_DIAMETER) if len(node.text) <= 1 else (max(width, 0.5), 0.34)
    if style.shape == "flat":
        return (max(width, MIN_BOX_WIDTH), FLAT_HEIGHT)
    return (max(width, MIN_BOX_WIDTH), BOX_HEIGHT if len(lines) < 3 else BOX_HEIGHT + 0.14 * (len(lines) - 2))


@dataclass
class _Vertex:
    """A vertex of the layered graph: a node, or a placeholder of an edge that crosses a layer."""

    key: str
    layer: int
    width: float
    group: tuple[str, ...]
    preds: list[int] = field(default_factory=list)
    succs: list[int] = field(default_factory=list)
    x: float = 0.0

    @property
    def dummy(self) -> bool:
        return self.key.startswith("\0")


def _common_prefix(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    out = []
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        out.append(x)
    return tuple(out)


def _isotonic(y: list[float], w: list[float]) -> list[float]:
    """Weighted least-squares non-decreasing fit of `y` (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [value, weight, count]
    for yi, wi in zip(y, w, strict=True):
        blocks.append([yi, wi, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, n2 = blocks.pop()
            v1, w1, n1 = blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    out: list[float] = []
    for v, _, n in blocks:
        out.extend([v] * int(n))
    return out


def _place(layer: list[_Vertex], desired: list[float]) -> None:
    """Set the x of the vertices of one layer, in their order, as close as possible (least squares)
    to `desired` while keeping every pair of neighbours apart by their half-widths plus a gap."""
    offsets = [0.0]
    for a, b in itertools.pairwise(layer):
        gap = 0.1 if (a.dummy and b.dummy) else NODE_GAP
        shared = len(_common_prefix(a.group, b.group))
        gap += 2 * GROUP_PAD * (len(a.group) + len(b.group) - 2 * shared)  # room for the frames between
        offsets.append(offsets[-1] + (a.width + b.width) / 2 + gap)
    weights = [0.4 if v.dummy else 1.0 for v in layer]
    z = _isotonic([d - o for d, o in zip(desired, offsets, strict=True)], weights)
    for v, zi, o in zip(layer, z, offsets, strict=True):
        v.x = zi + o


def _crossings(layers: list[list[int]], verts: list[_Vertex]) -> int:
    """Number of pairs of edges that cross between consecutive layers (every edge of the layered
    graph joins consecutive layers)."""
    total = 0
    for upper, lower in itertools.pairwise(layers):
        pos = {v: i for i, v in enumerate(upper)}
        edges = [(pos[p], j) for j, v in enumerate(lower) for p in verts[v].preds]
        total += sum(
            1 for i, (a1, b1) in enumerate(edges) for a2, b2 in edges[i + 1 :] if (a1 - a2) * (b1 - b2) < 0
        )
    return total


def _sort_layer(layer: list[int], verts: list[_Vertex], bary: dict[int, float], depth: int) -> list[int]:
    """Order a layer by barycentre, keeping groups together: a vertex sorts first by the mean
    barycentre of its outermost group in this layer, then of the next group, ..., then its own."""
    means: dict[tuple[str, ...], float] = {}
    for k in range(1, depth + 1):
        members: dict[tuple[str, ...], list[float]] = {}
        for v in layer:
            g = verts[v].group
            if len(g) >= k:
                members.setdefault(g[:k], []).append(bary[v])
        means.update({g: sum(b) / len(b) for g, b in members.items()})

    def key(v: int) -> tuple[float, ...]:
        g = verts[v].group
        return (*(means[g[:k]] if len(g) >= k else bary[v] for k in range(1, depth + 1)), bary[v])

    return sorted(layer, key=key)  # stable: ties keep the previous order


def _consistent_groups(layers: list[list[int]], verts: list[_Vertex], depth: int) -> list[list[int]]:
    """Re-sort every layer so that sibling groups come in the same left-to-right order in all layers
    (by the mean relative position of their members over the whole diagram), which lets their frames
    be separated; inside a group the previous order is kept."""
    rel = {v: (r + 0.5) / len(layer) for layer in layers for r, v in enumerate(layer)}
    members: dict[tuple[str, ...], list[float]] = {}
    for v, x in rel.items():
        g = verts[v].group
        for k in range(1, len(g) + 1):
            members.setdefault(g[:k], []).append(x)
    mean = {g: sum(xs) / len(xs) for g, xs in members.items()}

    def key(v: int) -> tuple[float, ...]:
        g = verts[v].group
        return (*(mean[g[:k]] if len(g) >= k else rel[v] for k in range(1, depth + 1)), rel[v])

    return [sorted(layer, key=key) for layer in layers]


def _frames(verts: list[_Vertex]) -> dict[tuple[str, ...], tuple[float, float, int, int]]:
    """(x0, x1, first layer, last layer) of the frame of every group, from its member nodes."""
    spans: dict[tuple[str, ...], list[float]] = {}
    deepest: dict[tuple[str, ...], int] = {}
    for v in verts:
        for k in range(1, len(v.group) + 1):
            g = v.group[:k]
            s = spans.setdefault(g, [math.inf, -math.inf, math.inf, -math.inf])
            s[0], s[1] = min(s[0], v.x - v.width / 2), max(s[1], v.x + v.width / 2)
            s[2], s[3] = min(s[2], v.layer), max(s[3], v.layer)
            deepest[g] = max(deepest.get(g, 0), len(v.group) - k)
    return {
        g: (s[0] - GROUP_PAD * (1 + deepest[g]), s[1] + GROUP_PAD * (1 + deepest[g]), int(s[2]), int(s[3]))
        for g, s in spans.items()
    }


def _separate_groups(layers: list[list[int]], verts: list[_Vertex], rounds: int = 50) -> None:
    """Shift groups sideways until the frames of sibling groups that share layers do not overlap:
    the right-hand group and everything right of it (except the left-hand group) move right."""
    for _ in range(rounds):
        frames = _frames(verts)
        clash = None
        for a, fa in sorted(frames.items()):
            for b, fb in sorted(frames.items()):
                if a[:-1] != b[:-1] or a == b or (fa[0] + fa[1]) > (fb[0] + fb[1]):
                    continue
                if fa[2] <= fb[3] and fb[2] <= fa[3] and fa[1] + 0.1 > fb[0] + 1e-9:
                    clash = (a, b, fa[1] + 0.1 - fb[0])
                    break
            if clash:
                break
        if clash is None:
            return
        a, b, shift = clash
        threshold = min(v.x for v in verts if not v.dummy and v.group[: len(b)] == b) - 1e-6
        for v in verts:
            if v.x >= threshold and v.group[: len(a)] != a:
                v.x += shift
        for layer in layers:  # restore the minimum gaps where the shift broke them
            row = [verts[v] for v in layer]
            _place(row, [v.x for v in row])


def layout(nodes: Sequence[Node], *, sweeps: int = 6) -> Layout:
    """Place a diagram (see the module docstring); DiagramError for a malformed node list."""
    by_id = validate(nodes)
    depth = depths(nodes)
    verts: list[_Vertex] = []
    index: dict[str, int] = {}
    for n in by_id.values():
        index[n.id] = len(verts)
        verts.append(_Vertex(n.id, depth[n.id], _box_size(n)[0], n.group))
    chains: list[tuple[str, str, list[int]]] = []  # (src, dst, vertex chain from src to dst)
    for n in by_id.values():
        for e, src in enumerate(n.inputs):
            chain = [index[src]]
            group = _common_prefix(by_id[src].group, n.group)
            for layer in range(depth[src] + 1, depth[n.id]):
                verts.append(_Vertex(f"\0{n.id}\0{e}\0{layer}", layer, DUMMY_WIDTH, group))
                chain.append(len(verts) - 1)
            chain.append(index[n.id])
            for a, b in itertools.pairwise(chain):
                verts[a].succs.append(b)
                verts[b].preds.append(a)
            chains.append((src, n.id, chain))

    n_layers = max(depth.values()) + 1
    layers: list[list[int]] = [[] for _ in range(n_layers)]
    for i, v in enumerate(verts):
        layers[v.layer].append(i)
    group_depth = max((len(v.group) for v in verts), default=0)

    # Crossing reduction: alternate downward and upward barycentre sweeps, keep the best ordering.
    best = [list(layer) for layer in layers]
    best_cross = _crossings(layers, verts)
    for sweep in range(sweeps):
        down = sweep % 2 == 0
        order = range(1, n_layers) if down else range(n_layers - 2, -1, -1)
        for li in order:
            ref = layers[li - 1] if down else layers[li + 1]
            pos = {v: i for i, v in enumerate(ref)}
            bary = {}
            for i, v in enumerate(layers[li]):
                nbrs = [pos[u] for u in (verts[v].preds if down else verts[v].succs) if u in pos]
                bary[v] = sum(nbrs) / len(nbrs) if nbrs else float(i) * len(ref) / max(len(layers[li]), 1)
            layers[li] = _sort_layer(layers[li], verts, bary, group_depth)
        cross = _crossings(layers, verts)
        if cross < best_cross:
            best, best_cross = [list(layer) for layer in layers], cross
    layers = _consistent_groups(best, verts, group_depth)
    best_cross = _crossings(layers, verts)

    # Coordinates: start packed, then pull every vertex towards the mean x of its neighbours.
    for layer in layers:
        _place([verts[v] for v in layer], [0.0] * len(layer))
    for sweep in range(2 * sweeps):
        down = sweep % 2 == 0
        order = range(n_layers) if down else range(n_layers - 1, -1, -1)
        for li in order:
            row = [verts[v] for v in layers[li]]
            desired = []
            for v in row:
                nbrs = v.preds if down else v.succs
                if not nbrs:  # a source (or sink) follows the other direction
                    nbrs = v.succs if down else v.preds
                desired.append(sum(verts[u].x for u in nbrs) / len(nbrs) if nbrs else v.x)
            _place(row, desired)
    _separate_groups(layers, verts)

    size = {n.id: _box_size(n) for n in by_id.values()}
    tallest = max(h for _, h in size.values())
    pitch = tallest + LAYER_GAP
    x0 = min(v.x - v.width / 2 for v in verts)
    for v in verts:
        v.x -= x0
    xy = {v.key: (v.x, -v.layer * pitch) for v in verts}
    rank = {verts[v].key: r for layer in layers for r, v in enumerate(layer) if not verts[v].dummy}

    edges = []
    for src, dst, chain in chains:
        (sx, sy), (tx, ty) = xy[src], xy[dst]
        start = (sx, sy - size[src][1] / 2)
        end = (tx, ty + size[dst][1] / 2)
        # through a layer an edge runs straight down its own slot, so it cannot cut a box's corner
        mid = tuple(
            (xy[verts[v].key][0], xy[verts[v].key][1] + dy)
            for v in chain[1:-1]
            for dy in (tallest / 2, -tallest / 2)
        )
        edges.append(Edge(src, dst, (start, *mid, end)))
    edges = _spread_ports(edges, xy, size)

    groups = _group_frames(verts, xy, size)
    xs = [xy[i][0] - size[i][0] / 2 for i in by_id] + [f[0] for f in groups.values()]
    xe = [xy[i][0] + size[i][0] / 2 for i in by_id] + [f[2] for f in groups.values()]
    ys = [xy[i][1] - size[i][1] / 2 for i in by_id] + [f[1] for f in groups.values()]
    ye = [xy[i][1] + size[i][1] / 2 for i in by_id] + [f[3] + 0.22 for f in groups.values()]
    extent = (min(xs), min(ys), max(xe), max(ye))
    return Layout(
        nodes=dict(by_id),
        depth=depth,
        rank=rank,
        xy={i: xy[i] for i in by_id},
        size=size,
        edges=tuple(edges),
        groups=groups,
        extent=extent,
        crossings=best_cross,
    )


def _spread_ports(
    edges: list[Edge], xy: Mapping[str, tuple[float, float]], size: Mapping[str, tuple[float, float]]
) -> list[Edge]:
    """Where a box has several incoming (outgoing) arrows, spread their ends along its top (bottom)
    edge, in the order of where they come from (go to), so that they do not meet in one point."""
    out = [list(e.points) for e in edges]
    for end, node_of, toward in ((-1, "dst", -2), (0, "src", 1)):
        by_node: dict[str, list[int]] = {}
        for k, e in enumerate(edges):
            by_node.setdefault(getattr(e, node_of), []).append(k)
        for node, ks in by_node.items():
            if len(ks) < 2:
                continue
            ks = sorted(ks, key=lambda k: (out[k][toward][0], k))
            w = size[node][0] * 0.7
            for j, k in enumerate(ks):
                x = xy[node][0] - w / 2 + w * (j + 0.5) / len(ks)
                out[k][end] = (x, out[k][end][1])
    return [Edge(e.src, e.dst, tuple(p)) for e, p in zip(edges, out, strict=True)]


def _group_frames(
    verts: Sequence[_Vertex], xy: Mapping[str, tuple[float, float]], size: Mapping[str, tuple[float, float]]
) -> dict[tuple[str, ...], tuple[float, float, float, float]]:
    """The frame ``(x0, y0, x1, y1)`` of every group path: its boxes and the edges routed inside it,
    plus a margin that grows with the number of groups nested inside, so that frames do not touch."""
    frames = {}
    for g, (x0, x1, _, _) in _frames(list(verts)).items():
        ids = [v.key for v in verts if not v.dummy and v.group[: len(g)] == g]
        nested = max(len(v.group) for v in verts if v.group[: len(g)] == g) - len(g)
        pad = GROUP_PAD * (1 + nested)
        y0 = min(xy[i][1] - size[i][1] / 2 for i in ids) - pad
        y1 = max(xy[i][1] + size[i][1] / 2 for i in ids) + pad + 0.16 * (1 + nested)
        frames[g] = (x0, y0, x1, y1)
    return frames


# --------------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------------

MARGIN = 0.25  # inches around each panel
PANEL_TITLE = 0.35  # inches for a panel's title
TITLE = 0.45  # inches for the figure's title
PANEL_TITLE_SIZE = FONT_SIZE + 1.5  # font sizes of a panel's and of the figure's title
TITLE_SIZE = FONT_SIZE + 3
LEGEND_ROW = 0.25  # inches per row of the legend


def _draw_panel(ax: Any, lay: Layout, title: str) -> set[str]:
    """Draw one laid-out diagram on `ax` (data units = inches); return the kinds it used."""
    for g, (x0, y0, x1, y1) in sorted(lay.groups.items(), key=lambda kv: len(kv[0])):
        ax.add_patch(
            Rectangle(
                (x0, y0),
                x1 - x0,
                y1 - y0,
                fill=False,
                linestyle="--",
                linewidth=0.8,
                edgecolor="#666666",
                gid="group:" + "/".join(g),
            )
        )
        ax.text(
            x0 + 0.05,
            y1 - 0.04,
            g[-1],
            ha="left",
            va="top",
            fontsize=FONT_SIZE - 1.5,
            style="italic",
            color="#444444",
        )
    for e in lay.edges:
        codes = [MplPath.MOVETO] + [MplPath.LINETO] * (len(e.points) - 1)
        ax.add_patch(
            FancyArrowPatch(
                path=MplPath(e.points, codes),
                arrowstyle="-|>",
                mutation_scale=8,
                linewidth=0.8,
                color="#333333",
                gid=f"edge:{e.src}->{e.dst}",
            )
        )
    used = set()
    for i, n in lay.nodes.items():
        style = KINDS[n.kind]
        used.add(n.kind)
        (x, y), (w, h) = lay.xy[i], lay.size[i]
        rounding = h / 2 if style.shape == "circle" else 0.06
        box = FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle=f"round,pad=0,rounding_size={rounding}")
        box.set(facecolor=style.color, edgecolor="black", linewidth=0.8, gid=f"node:{i}")
        ax.add_patch(box)
        ax.text(x, y, n.text, ha="center", va="center", fontsize=FONT_SIZE, gid=f"label:{i}")
        if style.marker:  # the paper's blue circle (Figure 6); hollow for RepConvN
            fill = "#1f5fbf" if style.marker == "filled" else "white"
            marker = Circle((x + w / 2, y + h / 2), 0.08, facecolor=fill, edgecolor="#1f5fbf", linewidth=1.5)
            marker.set_gid(f"marker:{i}")
            ax.add_patch(marker)
    ax.set_title(title, fontsize=PANEL_TITLE_SIZE)
    return used


def _legend_handles(kinds: Iterable[str]) -> list[Any]:
    handles: dict[str, Any] = {}
    for k in NODE_KINDS:  # fixed order
        if k not in kinds:
            continue
        style = KINDS[k]
        if style.legend in handles:
            continue
        if style.marker:
            handles[style.legend] = Line2D(
                [],
                [],
                marker="o",
                linestyle="none",
                markersize=7,
                markeredgewidth=1.5,
                markeredgecolor="#1f5fbf",
                markerfacecolor="#1f5fbf" if style.marker == "filled" else "white",
                label=style.legend,
            )
        else:
            handles[style.legend] = Patch(facecolor=style.color, edgecolor="black", label=style.legend)
    return list(handles.values())


def diagram_figure(
    panels: Sequence[Node] | Mapping[str, Sequence[Node]],
    *,
    title: str = "",
    ncols: int | None = None,
    dpi: int = 100,
) -> Figure:
    """Draw one diagram, or several side by side (a mapping panel title -> nodes, drawn in order,
    `ncols` per row; all in one row by default), with a legend of the node kinds used. One data unit
    is one inch, so the figure grows with the diagrams and the text keeps its size."""
    if not isinstance(panels, Mapping):
        panels = {"": panels}
    if not panels:
        raise DiagramError("no diagram to draw")
    lays = {}
    for name, nodes in panels.items():
        try:
            lays[name] = layout(as_nodes(nodes))
        except DiagramError as err:
            raise DiagramError(f"panel {name!r}: {err}" if name else str(err)) from None
    ncols = len(lays) if ncols is None else max(1, min(int(ncols), len(lays)))
    names = list(lays)
    grid = [names[i : i + ncols] for i in range(0, len(names), ncols)]

    def text_w(text: str, fontsize: float) -> float:  # inches, from the average character width
        return len(text) * CHAR_WIDTH * fontsize / FONT_SIZE

    def panel_w(n: str) -> float:  # the diagram, or its title where that is wider
        x0, _, x1, _ = lays[n].extent
        return max(x1 - x0, text_w(n, PANEL_TITLE_SIZE)) + 2 * MARGIN

    def panel_h(n: str) -> float:
        _, y0, _, y1 = lays[n].extent
        return y1 - y0 + 2 * MARGIN + (PANEL_TITLE if n else 0.0)

    col_w = [max(panel_w(row[c]) for row in grid if c < len(row)) for c in range(ncols)]
    row_h = [max(panel_h(n) for n in row) for row in grid]
    used = {n.kind for lay in lays.values() for n in lay.nodes.values()}
    handles = _legend_handles(used)
    width = max(sum(col_w), 4.0, text_w(title, TITLE_SIZE) + 2 * MARGIN)
    legend_cols = max(1, int(width // 2.6))
    legend_h = LEGEND_ROW * math.ceil(len(handles) / legend_cols) + 0.15
    title_h = TITLE if title else 0.1
    height = sum(row_h) + legend_h + title_h
    # whole pixels, so that the PNG's size is exactly the figure's size
    width, height = math.ceil(width * dpi) / dpi, math.ceil(height * dpi) / dpi
    fig = Figure(figsize=(width, height), dpi=dpi)
    top = height - title_h
    for r, row in enumerate(grid):
        left = (width - sum(col_w[: len(row)])) / 2
        for c, name in enumerate(row):
            lay = lays[name]
            x0, _, x1, y1 = lay.extent
            w, h = col_w[c], row_h[r] - (PANEL_TITLE if name else 0.0)
            ax = fig.add_axes((left / width, (top - row_h[r]) / height, w / width, h / height))
            cx = (x0 + x1) / 2  # centred across, aligned at the top
            ax.set_xlim(cx - w / 2, cx + w / 2)
            ax.set_ylim(y1 + MARGIN - h, y1 + MARGIN)
            ax.set_axis_off()
            ax.set_gid(f"panel:{name}")
            _draw_panel(ax, lay, name)
            left += col_w[c]
        top -= row_h[r]
    if title:
        fig.text(0.5, 1 - 0.3 / height, title, ha="center", va="center", fontsize=TITLE_SIZE)
    fig.legend(
        handles=handles,
        loc="lower center",
        ncols=legend_cols,
        fontsize=FONT_SIZE - 0.5,
        frameon=False,
        bbox_to_anchor=(0.5, 0.0),
    )
    return fig
