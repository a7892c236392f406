"""ONNX export and its verification, the speed benchmark's arithmetic on a fake clock, width rounding of
the compound scaling, and registry entries that the parameter counts do not pin down."""

from __future__ import annotations

import copy
import os
import statistics
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch
import yaml
from inference_models import SMALL_CFG, small_model
from torch import nn

from yolov7lib.deploy import End2End, export_and_verify, export_onnx, onnx_session, probe_images, verify_onnx
from yolov7lib.engine import bench
from yolov7lib.models import create_model, list_models, model_info, model_spec, reparameterize
from yolov7lib.models.architectures import ELANNet
from yolov7lib.models.registry import get_entry
from yolov7lib.models.scaling import scale_width, v7x_light


@pytest.fixture(scope="module")
def deploy_model() -> nn.Module:
    return reparameterize(small_model(nc=3, objectness_shift=3.0))


def _default_opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def test_export_writes_the_requested_opset(deploy_model, tmp_path: Path) -> None:
    assert _default_opset(onnx.load(str(export_onnx(deploy_model, tmp_path / "a.onnx", 64)))) == 17
    path = export_onnx(deploy_model, tmp_path / "b.onnx", 64, opset=18)
    assert _default_opset(onnx.load(str(path))) == 18


def _dims(value: onnx.ValueInfoProto) -> list[str | int]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


@pytest.mark.parametrize("end2end", [False, True])
def test_dynamic_outputs_declare_the_inputs_batch(deploy_model, tmp_path: Path, end2end: bool) -> None:
    """The graph's declared shapes tie every output's first axis to the input's batch axis, as the
    module documents (images (B, 3, H, W) -> output (B, N, 5 + nc); end2end outputs (B, ...))."""
    path = export_onnx(deploy_model, tmp_path / "m.onnx", 64, dynamic=True, end2end=end2end)
    graph = onnx.load(str(path)).graph
    assert [_dims(v) for v in graph.input] == [["batch", 3, "height", "width"]]
    outputs = {v.name: _dims(v) for v in graph.output}
    assert list(outputs) == (["num_dets", "boxes", "scores", "classes"] if end2end else ["output"])
    assert all(dims[0] == "batch" for dims in outputs.values())
    if not end2end:
        assert outputs["output"][1] == "anchors"


@pytest.mark.parametrize("end2end", [False, True])
def test_dynamic_outputs_declare_the_sizes_that_do_not_vary(deploy_model, tmp_path, end2end: bool) -> None:
    """Only batch (and the anchor count) vary: 5 + nc and max_det x 4 are declared as numbers, the
    shapes onnxruntime then returns at another batch and size (the exporter named them after nodes)."""
    path = export_onnx(deploy_model, tmp_path / "m.onnx", 64, dynamic=True, end2end=end2end, max_det=7)
    declared = {v.name: _dims(v) for v in onnx.load(str(path)).graph.output}
    nc = deploy_model.model[-1].nc
    want = {
        "num_dets": ["batch", 1],
        "boxes": ["batch", 7, 4],
        "scores": ["batch", 7],
        "classes": ["batch", 7],
    }
    assert declared == (want if end2end else {"output": ["batch", "anchors", 5 + nc]})

    got = onnx_session(path).run(None, {"images": probe_images(3, 96, 64).numpy()})
    for dims, array in zip(declared.values(), got, strict=True):
        assert all(d == n for d, n in zip(dims, array.shape, strict=True) if isinstance(d, int))


def test_a_failed_export_leaves_nothing_and_writes_beside_the_target(deploy_model, tmp_path, monkeypatch):
    """The graph goes to a temporary file in the target's folder (an atomic rename, never across file
    systems); when the exporter fails half-way, neither the target nor the temporary file remains."""
    written: list[Path] = []

    def failing_export(module, args, f, **kwargs):
        written.append(Path(f))
        Path(f).write_bytes(b"half a graph")
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(torch.onnx, "export", failing_export)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="exporter crashed"):
        export_onnx(deploy_model, out / "m.onnx", 64)
    assert len(written) == 1 and written[0].parent == out and written[0].name != "m.onnx"
    assert sorted(out.iterdir()) == []


def test_the_exported_file_has_the_permissions_of_an_ordinary_new_file(deploy_model, tmp_path) -> None:
    old = os.umask(0o027)
    try:
        path = export_onnx(deploy_model, tmp_path / "m.onnx", 64)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640  # 0o666 less the umask, not mkstemp's private 0o600


def _shifted_head(model: nn.Module, channel: int, shift: float) -> nn.Module:
    """A copy of `model` with the head's logit `channel` (0 x, 4 objectness, 5.. classes) up by `shift`."""
    other = copy.deepcopy(model)
    head = other.model[-1]
    with torch.no_grad():
        for conv in head.m:
            conv.bias.view(head.na, head.no)[:, channel] += shift
    return other


@torch.no_grad()
def test_verify_onnx_reports_the_differences_as_defined(deploy_model, tmp_path: Path) -> None:
    """Checked against a model that differs from the exported one (objectness and x logits shifted): the
    report equals the differences of the two PyTorch models' outputs, the boxes' relative to (long side +
    |value|) of a non-square image."""
    h, w = 64, 96
    path = export_onnx(deploy_model, tmp_path / "m.onnx", img_size=(h, w), batch=2)
    other = _shifted_head(_shifted_head(deploy_model, 4, 1.0), 0, 0.5)
    x = probe_images(2, h, w, seed=3)
    exported, checked = deploy_model(x)[0].numpy(), other(x)[0].numpy()
    box = np.abs(exported[..., :4] - checked[..., :4])
    want_scores = np.abs(exported[..., 4:] - checked[..., 4:]).max()
    want_rel = (box / (w + np.abs(checked[..., :4]))).max()
    assert want_scores > 0.05 and np.abs(exported[..., 5:] - checked[..., 5:]).max() < 1e-6
    for other_rule in (box / w, box / (h + np.abs(checked[..., :4]))):  # the definition is not moot here
        assert abs(other_rule.max() - want_rel) > 0.05 * want_rel
    report = verify_onnx(path, other, x)
    assert report["scores_max_abs_diff"] == pytest.approx(want_scores, abs=1e-4)
    assert report["boxes_max_abs_diff_px"] == pytest.approx(box.max(), rel=1e-3)
    assert report["boxes_max_rel_diff"] == pytest.approx(want_rel, rel=1e-3)
    # and against the exported model itself, all of them vanish
    same = verify_onnx(path, deploy_model, x)
    assert same["scores_max_abs_diff"] < 1e-4 and same["boxes_max_rel_diff"] < 1e-4


def _swap_classes(model: nn.Module, a: int, b: int) -> nn.Module:
    """A copy of `model` whose head predicts class `a` where `model` predicts `b` and vice versa."""
    other = copy.deepcopy(model)
    head = other.model[-1]
    with torch.no_grad():
        for conv in head.m:
            for t in (conv.weight, conv.bias):
                rows = t.view(head.na, head.no, *t.shape[1:])
                rows[:, [5 + a, 5 + b]] = rows[:, [5 + b, 5 + a]].clone()
    return other


@torch.no_grad()
def test_end2end_verification_compares_the_classes_with_the_given_thresholds(deploy_model, tmp_path) -> None:
    conf, iou, max_det = 0.05, 0.45, 30
    path = export_onnx(deploy_model, tmp_path / "e2e.onnx", 64, batch=2, end2end=True, conf_thres=conf,
                       iou_thres=iou, max_det=max_det)  # fmt: skip
    x = probe_images(2, 64, 64, seed=5)
    nums_at = {c: End2End(deploy_model, c, iou, max_det)(x)[0].flatten().tolist() for c in (conf, 0.25)}
    assert nums_at[conf] != nums_at[0.25]  # the thresholds matter for this model and these images
    report = verify_onnx(path, deploy_model, x, end2end=True, conf_thres=conf, iou_thres=iou, max_det=max_det)
    assert report["same_detections"] is True and report["scores_max_abs_diff"] < 1e-4
    # the same boxes and scores, with classes 0 and 1 exchanged: not the same detections
    swapped = _swap_classes(deploy_model, 0, 1)
    num, _, _, classes = End2End(swapped, conf, iou, max_det)(x)
    assert num.flatten().tolist() == nums_at[conf]
    assert ((classes == 0) | (classes == 1)).any()
    report = verify_onnx(path, swapped, x, end2end=True, conf_thres=conf, iou_thres=iou, max_det=max_det)
    assert report == {"same_detections": False}


def test_end2end_verification_says_how_many_detections_it_compared(deploy_model, tmp_path, capsys) -> None:
    """At a --conf no probe box reaches, the check compares two empty results: its differences are 0 for
    want of anything to compare, which the report and the command now say instead of printing 0 diffs."""
    from yolov7lib.cli import main

    x = probe_images(2, 64, 64, seed=5)
    for conf in (0.05, 1.0):
        path = export_onnx(deploy_model, tmp_path / f"e2e{conf}.onnx", 64, batch=2, end2end=True,
                           conf_thres=conf)  # fmt: skip
        report = verify_onnx(path, deploy_model, x, end2end=True, conf_thres=conf)
        assert report["detections"] == int(End2End(deploy_model, conf)(x)[0].sum())
        assert (report["detections"] > 0) == (conf < 1.0)
    cfg = tmp_path / "small.yaml"
    cfg.write_text(yaml.safe_dump(SMALL_CFG))
    out = tmp_path / "cli.onnx"
    assert (
        main(["export", "--model", str(cfg), "--img", "64", "--end2end", "--conf", "1", "--out", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "no box or score was compared" in printed and "max abs diff" not in printed


def test_dynamic_export_is_verified_at_another_batch_and_width(deploy_model, tmp_path: Path) -> None:
    report = export_and_verify(deploy_model, tmp_path / "m.onnx", img_size=64, batch=1, dynamic=True)
    checks = report["checks"]
    assert [(c["batch"], c["height"], c["width"]) for c in checks] == [(1, 64, 64), (2, 64, 32)]
    assert all(c["scores_max_abs_diff"] < 1e-4 and c["boxes_max_rel_diff"] < 1e-4 for c in checks)


# ---- bench: the arithmetic on a fake clock ------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def work(self, durations: list[float], calls: list[int] | None = None):
        """A callable that takes the next of `durations` seconds on this clock each call."""
        pending = list(durations)

        def fn() -> None:
            self.now += pending.pop(0)
            if calls is not None:
                calls.append(1)

        return fn


def test_matmul_peak_is_the_median_of_the_timed_products_after_the_warmup(monkeypatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(bench, "time", SimpleNamespace(perf_counter=clock))
    # two untimed warm-up products of 100 s, then five timed ones: median 3 s (mean 3.6 s)
    monkeypatch.setattr(bench, "_matmul", lambda device, dtype, n: clock.work([100, 100, 1, 4, 2, 8, 3]))
    assert bench.matmul_peak("cpu", n=256, runs=5) == pytest.approx(2 * 256**3 / 3.0 / 1e9, rel=1e-9)


def test_run_bench_rows_from_a_fake_clock(tmp_path: Path, monkeypatch) -> None:
    """Warm-up passes untimed, the median of the timed passes per backend (each timed alone), per-image
    latency and images/s from the batch, the peak the median of the products, img rounded up to a
    multiple of the largest stride (65 -> 96 with strides 8, 16: at least 32), float16 only on CUDA."""
    cfg = tmp_path / "small.yaml"
    cfg.write_text(yaml.safe_dump(SMALL_CFG))
    clock = FakeClock()
    monkeypatch.setattr(bench, "time", SimpleNamespace(perf_counter=clock))
    warmup, runs, batch = 2, 5, 2
    timed = {"eager": [0.010, 0.040, 0.020, 0.5, 0.030], "onnxruntime": [0.004, 0.002, 0.003, 0.1, 0.005]}
    calls: dict[str, list[int]] = {b: [] for b in timed}
    inputs = []

    def prepare(backend, model, x, dev, workdir, threads, row):
        inputs.append((tuple(x.shape), x.dtype))
        return clock.work([50.0] * warmup + timed[backend], calls[backend])

    product_times = [0.5, 0.25, 1.0, 2.0, 0.4]  # after one untimed product of 100 s; median 0.5 s
    products: list[torch.dtype] = []

    def matmul(dev, dtype, n=bench.MATMUL_N):
        products.append(dtype)
        return clock.work([100.0, *product_times])

    monkeypatch.setattr(bench, "_prepare", prepare)
    monkeypatch.setattr(bench, "_matmul", matmul)
    rows = bench.run_bench(str(cfg), img=65, batches=(batch,), backends=("eager", "onnxruntime"), runs=runs,
                           warmup=warmup, half=True, progress=False)  # fmt: skip
    assert inputs == [((batch, 3, 96, 96), torch.float32)] * 2 and products == [torch.float32]
    assert {b: len(c) for b, c in calls.items()} == {b: warmup + runs for b in timed}
    gflops = model_info(reparameterize(create_model(SMALL_CFG)), 96).gflops
    peak = bench.MATMUL_FLOPS / statistics.median(product_times) / 1e9
    for row in rows:
        seconds = statistics.median(timed[row.backend])
        assert row.error is None and row.img == 96 and row.dtype == "float32"
        assert row.ms_per_batch == pytest.approx(1e3 * seconds, rel=1e-9)
        assert row.ms_per_image == pytest.approx(1e3 * seconds / batch, rel=1e-9)
        assert row.images_per_s == pytest.approx(batch / seconds, rel=1e-9)
        assert row.peak_gflops_per_s == pytest.approx(peak, rel=1e-9)
        assert row.gflops_per_s == pytest.approx(gflops * batch / seconds, rel=1e-9)
        assert row.peak_fraction == pytest.approx(gflops * batch / seconds / peak, rel=1e-9)


def _row(backend: str, batch: int, ms_per_image: float) -> bench.BenchRow:
    return bench.BenchRow("m", backend, batch, 64, ms_per_image, 1e3 / ms_per_image, 1.0, 0.1,
                          ms_per_batch=ms_per_image * batch)  # fmt: skip


def test_format_rows_speedup_is_eager_time_per_image_over_the_backends() -> None:
    rows = [
        _row("eager", 1, 10.0),
        _row("onnxruntime", 1, 4.0),
        _row("eager", 4, 8.0),
        _row("onnxruntime", 4, 2.0),
    ]
    lines = bench.format_rows(rows).splitlines()[1:5]
    assert [line.split()[8] for line in lines] == ["1.00x", "2.50x", "1.00x", "4.00x"]


@pytest.mark.parametrize("name", ["yolov7-tiny-cpu", "yolov7x-light-width1.25"])
def test_format_rows_keeps_a_long_model_name_apart_from_its_backend(name: str) -> None:
    """The kit's default model (15 characters) ran into the 14-character column: 'yolov7-tiny-cpueager'."""
    rows = [replace(_row("eager", 1, 10.0), model=name), replace(_row("onnxruntime", 1, 4.0), model=name)]
    rows.append(replace(rows[0], ms_per_image=None, error="RuntimeError: no"))
    header, *lines = bench.format_rows(rows).splitlines()[:4]
    assert header.split()[:2] == ["model", "backend"]
    assert [line.split()[:2] for line in lines] == [[name, "eager"], [name, "onnxruntime"], [name, "eager"]]
    assert len({line.index("eager") if "eager" in line else line.index("onnx") for line in lines}) == 1
    assert header.index("backend") == lines[0].index("eager")


# ---- scaling and registry -----------------------------------------------------------------------------


def test_scale_width_keeps_a_product_that_is_a_multiple_of_eight() -> None:
    """400 x 1.1 = 440 is a multiple of 8 (float: 440.00000000000006, which a bare ceil takes to 448);
    64 x 1.1 = 70.4 goes up to 72."""
    base = get_entry("yolov7").arch
    assert isinstance(base, ELANNet)
    wider = scale_width(replace(v7x_light(base), spp=400), 1.1)
    assert wider.spp == 440
    assert wider.stem[1][0] == 72 and wider.stem[1][1] == 2  # (64, stride 2): the stride is kept


def _convs(name: str) -> list[nn.Conv2d]:
    with torch.device("meta"):
        model = create_model(name, deploy=True)
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def test_the_cpu_default_is_yolov7_tiny_with_every_layer_half_as_wide() -> None:
    tiny, cpu = _convs("yolov7-tiny"), _convs("yolov7-tiny-cpu")
    assert len(tiny) == len(cpu) and get_entry("yolov7-tiny-cpu").img_size == 320
    body, head = slice(0, -3), slice(-3, None)  # the three detection convolutions: na x (5 + nc) outputs
    assert [c.out_channels for c in cpu[body]] == [c.out_channels // 2 for c in tiny[body]]
    assert [c.in_channels for c in cpu[1:]] == [c.in_channels // 2 for c in tiny[1:]]
    assert [c.out_channels for c in cpu[head]] == [c.out_channels for c in tiny[head]] == [255] * 3
    assert [c.kernel_size for c in cpu] == [c.kernel_size for c in tiny]


def test_yolov7_tiny_activations_leaky_relu_and_silu_variant() -> None:
    """yolov7-tiny uses LeakyReLU(0.1) throughout; yolov7-tiny-silu is the same graph with SiLU."""

    def acts(name: str) -> list[nn.Module]:
        with torch.device("meta"):
            model = create_model(name, deploy=True)
        return [m for m in model.modules() if isinstance(m, nn.SiLU | nn.LeakyReLU | nn.ReLU)]

    leaky, silu = acts("yolov7-tiny"), acts("yolov7-tiny-silu")
    assert len(leaky) == len(silu) > 50
    assert all(isinstance(m, nn.LeakyReLU) and m.negative_slope == 0.1 for m in leaky)
    assert all(type(m) is nn.SiLU for m in silu)


def test_registered_anchors_are_the_official_cfgs() -> None:
    """Anchors (w, h pixel pairs per level) of the official yolov7-tiny.yaml, yolov7.yaml, yolov7-w6.yaml."""
    official = {
        "yolov7-tiny": [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]],
        "yolov7": [[12, 16, 19, 36, 40, 28], [36, 75, 76, 55, 72, 146], [142, 110, 192, 243, 459, 401]],
        "yolov7-w6": [
            [19, 27, 44, 40, 38, 94],
            [96, 68, 86, 152, 180, 137],
            [140, 301, 303, 264, 238, 542],
            [436, 615, 739, 380, 925, 792],
        ],
    }
    for name, anchors in official.items():
        assert [list(a) for a in model_spec(name)["anchors"]] == anchors, name
    assert [list(a) for a in model_spec("yolov7-tiny-cpu")["anchors"]] == official["yolov7-tiny"]


def test_list_models_is_sorted() -> None:
    names = list_models()
    assert names == sorted(names) and {"yolov7", "yolov7x", "yolov7-tiny-cpu", "yolor-csp"} <= set(names)


def test_a_file_that_appears_during_the_export_is_not_overwritten(deploy_model, tmp_path, monkeypatch):
    """The existence check comes before the export; a file written at the target meanwhile (another
    export, the user) must survive: the finished graph is linked to its name, never renamed over it."""
    target = tmp_path / "m.onnx"
    real_export = torch.onnx.export

    def export_while_someone_writes(*args, **kwargs):
        target.write_bytes(b"another export")
        return real_export(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", export_while_someone_writes)
    with pytest.raises(FileExistsError, match="appeared during the export"):
        export_onnx(deploy_model, target, 64)
    assert target.read_bytes() == b"another export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no temporary file left


def test_a_batch_size_given_twice_is_measured_once(tmp_path: Path) -> None:
    """`yolov7 bench --batch 1 1`: one row per backend, not an onnxruntime row failing on its own file."""
    cfg = tmp_path / "small.yaml"
    cfg.write_text(yaml.safe_dump(SMALL_CFG))
    rows = bench.run_bench(str(cfg), img=64, batches=(1, 1), backends=("eager", "onnxruntime"), runs=1,
                           warmup=0, progress=False)  # fmt: skip
    assert [(r.backend, r.batch, r.error) for r in rows] == [("eager", 1, None), ("onnxruntime", 1, None)]


@pytest.mark.parametrize("settings", [{"runs": 0}, {"warmup": -1}, {"threads": 0}])
def test_run_bench_refuses_no_timed_runs_negative_warmup_and_no_threads(settings: dict) -> None:
    """benchmarks/bench_inference.py passes these through: runs=0 had no median to report, warmup=-1
    was printed as '-1 warm-up', threads=0 silently meant torch's default."""
    with pytest.raises(ValueError, match="runs must be at least 1, warmup at least 0"):
        bench.run_bench("yolov7-tiny", img=64, batches=(1,), backends=("eager",), progress=False, **settings)


def test_bench_rounds_an_img_off_the_stride_up_and_says_so(tmp_path: Path, caplog) -> None:
    """As val, detect and export do (engine.weights.fit_img_size): the rows are at the rounded size and
    the change is logged (bench rounded it silently)."""
    cfg = tmp_path / "small.yaml"
    cfg.write_text(yaml.safe_dump(SMALL_CFG))
    with caplog.at_level("WARNING", logger="yolov7lib.engine.weights"):
        rows = bench.run_bench(str(cfg), img=40, batches=(1,), backends=("eager",), runs=1, warmup=0,
                               progress=False)  # fmt: skip
    assert [r.img for r in rows] == [64]
    assert "--img 40 is not a multiple of the stride 32; using 64" in caplog.text
