"""Figures 2-7 drawn from the model code: the diagrams hold exactly the model's layers and edges."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from yolov7lib.loss import AUX_ASSIGNERS, AssignerConfig, LabelAssigner
from yolov7lib.models import create_model, csp
from yolov7lib.models.ablations import FIGURE6
from yolov7lib.models.layers import RepConv, RepConvN
from yolov7lib.report.diagram import validate
from yolov7lib.report.model_diagrams import (
    block_nodes,
    build_meta,
    figure_panels,
    layer_widths,
    model_nodes,
    residual_block_nodes,
    write_architecture_figures,
)


@pytest.fixture(scope="module")
def tiny() -> nn.Module:
    torch.manual_seed(0)
    return create_model("yolov7-tiny", nc=4).eval()


def sources(layer: nn.Module) -> list[int]:
    """The absolute indices a layer reads, from its `.f` (-1 = previous layer)."""
    f = [layer.f] if isinstance(layer.f, int) else list(layer.f)
    return [j if j >= 0 else layer.i + j for j in f]


def test_block_holds_exactly_the_groups_layers_and_their_from_indices(tiny: nn.Module) -> None:
    group = next(g for g in tiny.cfg["groups"] if g["name"] == "backbone.stage1")
    layers = set(range(group["first"], group["last"] + 1))
    nodes = block_nodes(tiny, "backbone.stage1")
    validate(nodes)
    inner = {n.id: n for n in nodes if n.kind != "input"}
    assert set(inner) == {str(i) for i in layers}
    for i in layers:
        assert inner[str(i)].inputs == tuple(str(j) for j in sources(tiny.model[i]))
    outside = {j for i in layers for j in sources(tiny.model[i])} - layers
    assert {n.id for n in nodes if n.kind == "input"} == {str(j) for j in outside}
    assert all(n.group == ("backbone.stage1 (ELAN)",) for n in inner.values())


def test_node_widths_are_the_layers_output_channels(tiny: nn.Module) -> None:
    # independent of the meta shape pass: a real forward pass on a small image
    seen: dict[int, int] = {}
    hooks = [
        layer.register_forward_hook(lambda m, i, o: seen.__setitem__(m.i, o.shape[1]))
        for layer in tiny.model[:-1]
    ]
    with torch.no_grad():
        tiny(torch.zeros(1, 3, 64, 64))
    for h in hooks:
        h.remove()
    widths = layer_widths(tiny)
    assert {i: w for i, w in widths.items() if w is not None} == seen
    nodes = model_nodes(tiny)
    assert {int(n.id): n.channels for n in nodes if n.kind not in ("head", "input")} == seen


def test_every_layer_of_a_model_is_drawn_once(tiny: nn.Module) -> None:
    nodes = model_nodes(tiny)
    validate(nodes)
    assert [n.id for n in nodes] == ["-1"] + [str(i) for i in range(len(tiny.model))]
    assert nodes[0].label == "image" and nodes[1].inputs == ("-1",)


@pytest.mark.parametrize("letter", sorted(FIGURE6))
def test_repconv_nodes_exactly_where_the_model_has_repconv(letter: str) -> None:
    graph = build_meta(f"yolov7x-fig6{letter}")
    nodes = {n.id: n for n in model_nodes(graph) if n.kind != "input"}
    for layer in graph.model:
        kind = nodes[str(layer.i)].kind
        if isinstance(layer, RepConvN):
            assert kind == "RepConvN", layer.i
        elif isinstance(layer, RepConv):
            assert kind == "RepConv", layer.i
        else:
            assert kind not in ("RepConv", "RepConvN"), layer.i


def test_eelan_is_two_nested_cardinality_groups_merged_by_a_sum() -> None:
    graph = build_meta("yolov7-e6e")
    nodes = block_nodes(graph, "backbone.stage1")
    validate(nodes)
    inner = [n for n in nodes if n.kind != "input"]
    outer = "backbone.stage1 (E-ELAN)"
    groups = {n.group for n in inner}
    assert groups == {(outer,), (outer, "backbone.stage1.0 (ELAN)"), (outer, "backbone.stage1.1 (ELAN)")}
    (merge,) = [n for n in inner if n.group == (outer,)]
    assert merge.kind == "add"
    by_id = {n.id: n for n in inner}
    assert sorted(by_id[i].group[-1] for i in merge.inputs) == [
        "backbone.stage1.0 (ELAN)",
        "backbone.stage1.1 (ELAN)",
    ]
    assert all(by_id[i].kind == "transition" for i in merge.inputs)
    # both cardinality groups read the block's one input
    (src,) = [n.id for n in nodes if n.kind == "input"]
    assert sum(src in n.inputs for n in inner) == 4


def test_split_head_separates_lead_and_auxiliary_inputs() -> None:
    graph = build_meta("yolov7-w6")
    head = graph.model[-1]
    nodes = {n.id: n for n in block_nodes(graph, "lead", "aux", "head", split_head=True)}
    srcs = tuple(str(j) for j in sources(head))
    assert nodes[f"{head.i}.lead"].inputs == srcs[: head.nl]
    assert nodes[f"{head.i}.aux"].inputs == srcs[head.nl :]
    assert nodes[f"{head.i}.lead"].kind == "lead-head" and nodes[f"{head.i}.aux"].kind == "aux-head"


@pytest.mark.parametrize(
    ("block", "kernels", "kinds"),
    [
        (csp.Bottleneck(32, 32, e=1.0), [1, 3], ["conv1x1", "conv3x3"]),
        (csp.RBottleneck(32, 32, e=1.0), [3, 1], ["conv3x3", "conv1x1"]),
        (csp.RepBottleneck(32, 32, e=1.0), [1, 3], ["conv1x1", "RepConv"]),
        (csp.RepRBottleneck(32, 32, e=1.0), [3, 1], ["RepConv", "conv1x1"]),
        (csp.RepBottleneck(32, 32, e=0.5), [1, 3], ["conv1x1", "RepConvN"]),  # widths differ: no identity
    ],
)
def test_residual_block_drawn_from_its_convolutions(
    block: nn.Module, kernels: list[int], kinds: list[str]
) -> None:
    nodes = residual_block_nodes(block)
    validate(nodes)
    convs = [n for n in nodes if n.id.startswith("cv")]
    assert [n.kind for n in convs] == kinds
    modules = [block.cv1, block.cv2]
    for n, m, k in zip(convs, modules, kernels, strict=True):
        conv = m.conv if hasattr(m, "conv") else m.rbr_dense[0]
        assert conv.kernel_size == (k, k)
        assert n.channels == conv.out_channels
    adds = [n for n in nodes if n.kind == "add"]
    assert len(adds) == int(block.add)
    assert set(adds[0].inputs) == {"in", convs[-1].id}


def test_dark_and_reversed_dark_block_have_the_same_parameters() -> None:
    panels = figure_panels(7)
    counts = [int(t.split(", ")[-1].split()[0].replace(",", "")) for t in panels]
    assert counts[0] == counts[1] == sum(p.numel() for p in csp.BottleneckCSPA(128, 128, 1).m.parameters())


def test_layer_widths_cover_every_layer_and_leave_the_head_without_one(tiny: nn.Module) -> None:
    """layer_widths has one entry per layer; the detection head's is None (it has several outputs)."""
    widths = layer_widths(tiny)
    assert sorted(widths) == list(range(len(tiny.model)))
    assert [i for i, w in widths.items() if w is None] == [len(tiny.model) - 1]


def test_conv_labels_give_the_layers_kernel_and_a_stride_above_one(tiny: nn.Module) -> None:
    """A Conv node reads '<k>x<k> conv', with ', s<stride>' only where the stride is above 1, from the
    layer's own convolution (transitions keep their own label)."""
    nodes = {n.id: n for n in model_nodes(tiny)}
    strides = set()
    for layer in tiny.model:
        node = nodes[str(layer.i)]
        if layer.type != "Conv" or node.kind == "transition":
            continue
        (k, _), (s, _) = layer.conv.kernel_size, layer.conv.stride
        assert node.label == f"{k}x{k} conv" + (f", s{s}" if s > 1 else ""), layer.i
        strides.add(s)
    assert strides == {1, 2}


def test_transitions_are_the_1x1_convs_that_close_their_own_blocks_concatenation(tiny: nn.Module) -> None:
    """yolov7-tiny's transitions, read off its spec: the last layer of each ELAN (7, 14, 21, 28; the
    neck's 47, 57, 65, 73) and SPPCSPC's two (35, 37). The 1x1 convs that open a neck ELAN (42, 43,
    52, 53) read the up-sampling block's concatenation, another group's: plain 1x1 convs."""
    kinds = {n.id: n.kind for n in model_nodes(tiny)}
    transitions = {int(i) for i, k in kinds.items() if k == "transition"}
    assert transitions == {7, 14, 21, 28, 35, 37, 47, 57, 65, 73}
    assert {kinds[str(i)] for i in (42, 43, 52, 53)} == {"conv1x1"}


def test_an_outside_input_names_the_innermost_group_it_comes_from() -> None:
    """An input node from outside the selection is labelled with its layer's innermost group (a
    cardinality group inside an E-ELAN, not the E-ELAN); the image is "image"."""
    from types import SimpleNamespace

    layers = [SimpleNamespace(i=i, f=f, type="Concat") for i, f in enumerate((-1, -1, [0, 1]))]
    groups = [
        {"name": "stage", "kind": "E-ELAN", "first": 0, "last": 1},
        {"name": "stage.0", "kind": "ELAN", "first": 0, "last": 0},
    ]
    graph = SimpleNamespace(model=layers, cfg={"groups": groups})
    labels = {n.id: n.label for n in model_nodes(graph, [2], widths={})}
    assert labels == {"0": "from 0 (stage.0)", "1": "from 1 (stage)", "2": "concat"}
    assert model_nodes(graph, [0], widths={})[0].label == "image"


@pytest.mark.parametrize("block", [csp.Bottleneck(32, 32, shortcut=False), csp.RepBottleneck(32, 64, e=1.0)])
def test_a_block_without_a_shortcut_is_drawn_without_the_addition(block: nn.Module) -> None:
    """block.add is False (no shortcut, or widths that differ): input, convolutions, output."""
    assert not block.add
    nodes = residual_block_nodes(block)
    assert [n.id for n in nodes] == ["in", "cv1", "cv2", "out"] and nodes[-1].inputs == ("cv2",)


def test_figure7_draws_the_dark_block_then_the_reversed_one() -> None:
    """Figure 7: the dark block's residual unit is 1x1 then 3x3, the reversed dark block's 3x3 then 1x1."""
    panels = list(figure_panels(7).values())
    kinds = [[n.kind for n in nodes if n.id.startswith("cv")] for nodes in panels]
    assert kinds == [["conv1x1", "conv3x3"], ["conv3x3", "conv1x1"]]


def test_repconv_labels_say_where_the_identity_branch_is_missing() -> None:
    """A RepConv whose input and output widths differ has no identity branch; its label says so, and
    the label of one with the branch does not."""
    from types import SimpleNamespace

    layers = [RepConv(8, 8), RepConv(8, 16)]
    for i, layer in enumerate(layers):
        layer.i, layer.f, layer.type = i, -1, "RepConv"
    assert [layer.rbr_identity is None for layer in layers] == [False, True]
    nodes = model_nodes(SimpleNamespace(model=layers, cfg={}), widths={})
    assert [n.label for n in nodes[1:]] == ["RepConv", "RepConv (no identity: widths differ)"]


def _aux_assignment(mode: str, lead: list[torch.Tensor], aux: list[torch.Tensor], targets: torch.Tensor):
    cfg = AssignerConfig(simota=True, anchor_t=4.0, topk=10, aux_assign=mode, aux_constrained=True)
    anchors = torch.tensor([[[1.5, 2.0], [2.4, 4.5], [5.0, 3.5]]] * 3)
    assigner = LabelAssigner([8.0, 16.0, 32.0], anchors, cfg)
    fine, coarse = assigner(lead, targets, (128, 128), aux)
    return [tuple(t.tolist() for t in level) for level in fine.positives()], [
        tuple(t.tolist() for t in level) for level in coarse.positives()
    ]


@pytest.mark.parametrize("mode", AUX_ASSIGNERS)
def test_assigner_wiring_is_what_the_label_assigner_does(mode: str) -> None:
    """Figure 5 (c)-(e) against LabelAssigner: the auxiliary assigner reads the auxiliary head iff
    changing the auxiliary predictions changes its labels; the auxiliary loss shares the lead's label
    node iff both heads get the same labels."""
    from yolov7lib.report.model_diagrams import assigner_nodes

    g = torch.Generator().manual_seed(1)
    shapes = [(1, 3, 16, 16, 9), (1, 3, 8, 8, 9), (1, 3, 4, 4, 9)]
    lead = [torch.randn(s, generator=g) for s in shapes]
    aux = [torch.randn(s, generator=g) for s in shapes]
    aux2 = [torch.randn(s, generator=g) * 3 for s in shapes]
    targets = torch.tensor(
        [
            [0, 1, 0.3, 0.3, 0.2, 0.25],
            [0, 2, 0.62, 0.55, 0.3, 0.2],
            [0, 0, 0.5, 0.8, 0.1, 0.12],
            [0, 3, 0.8, 0.2, 0.4, 0.3],
        ]
    )
    fine, aux_labels = _aux_assignment(mode, lead, aux, targets)
    _, aux_labels2 = _aux_assignment(mode, lead, aux2, targets)

    nodes = {n.id: n for n in assigner_nodes(mode)}
    validate(list(nodes.values()))
    aux_label_node = next(i for i in nodes["aux_loss"].inputs if nodes[i].kind == "label")
    lead_label_node = next(i for i in nodes["lead_loss"].inputs if nodes[i].kind == "label")
    (aux_assigner,) = nodes[aux_label_node].inputs
    assert ("aux" in nodes[aux_assigner].inputs) == (aux_labels != aux_labels2)
    assert (aux_label_node == lead_label_node) == (aux_labels == fine)


def test_figure3_transition_widens_by_the_blocks_output_change() -> None:
    """Section 3.2: depth scaling widens the block's concatenation; compound scaling widens the
    transition by the same factor."""
    panels = list(figure_panels(3).values())

    def widths(nodes):
        cat = next(n.channels for n in nodes if n.kind == "concat")
        trans = next(n.channels for n in nodes if n.kind == "transition")
        stacks = sum(n.kind == "conv3x3" for n in nodes)
        return cat, trans, stacks

    (cat_a, t_a, s_a), (cat_b, t_b, s_b), (cat_c, t_c, s_c) = map(widths, panels)
    assert s_b == s_c == s_a * 3 // 2
    assert cat_b == cat_c > cat_a and t_b == t_a
    assert t_c == t_a * cat_b / cat_a


def test_figure6_places_repconv_as_table4_variants_say() -> None:
    counts = {
        title[1]: (sum(n.kind == "RepConv" for n in nodes), sum(n.kind == "RepConvN" for n in nodes))
        for title, nodes in figure_panels(6).items()
    }
    # 3 stacks of two 3x3 convs: all six, the first of each stack, or the last of each stack
    assert counts == {"a": (6, 0), "b": (3, 0), "c": (0, 3), "d": (3, 0), "e": (0, 6)}


def test_figure_pngs_are_reproducible(tmp_path) -> None:
    a = write_architecture_figures(tmp_path / "a", [7])[7]
    b = write_architecture_figures(tmp_path / "b", [7])[7]
    assert a.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and a.read_bytes() == b.read_bytes()


def test_unknown_group_and_figure_are_clear_errors(tiny: nn.Module) -> None:
    with pytest.raises(KeyError, match="groups: stem"):
        block_nodes(tiny, "nope")
    with pytest.raises(ValueError, match="not 8"):
        figure_panels(8)
    with pytest.raises(ValueError, match="not a residual block"):
        residual_block_nodes(nn.ReLU())
