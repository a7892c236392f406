"""`yolov7 export`: the ONNX graph computes what PyTorch computes (onnxruntime as the independent
runtime), with dynamic shapes, and the end2end graph keeps the detections of `ops.non_max_suppression`.

Tolerance: scores (objectness and classes, in [0, 1]) within 1e-4 absolute; boxes, in pixels up to the
image size or beyond, within 1e-4 x (image side + |value|) (float32 resolves about 1e-5 relative there;
PyTorch's own float32 pass differs from a float64 one by about that much).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from inference_models import small_model, tiny_model

from yolov7lib.deploy import MAX_OPSET, End2End, export_onnx, onnx_session, probe_images, verify_onnx
from yolov7lib.deploy.end2end import nms_indices
from yolov7lib.models import reparameterize
from yolov7lib.ops import non_max_suppression
from yolov7lib.ops.nms import CLASS_OFFSET


def _close(got: np.ndarray, want: torch.Tensor, side: int) -> None:
    want = want.detach().numpy()
    np.testing.assert_allclose(got[..., 4:], want[..., 4:], rtol=0, atol=1e-4)
    np.testing.assert_allclose(got[..., :4], want[..., :4], rtol=1e-4, atol=1e-4 * side)


@pytest.fixture(scope="module")
def deploy_model() -> torch.nn.Module:
    return reparameterize(small_model(nc=3, objectness_shift=3.0))


def test_static_export_matches_pytorch(deploy_model, tmp_path: Path) -> None:
    path = export_onnx(deploy_model, tmp_path / "m.onnx", img_size=(96, 128))
    x = probe_images(1, 96, 128, seed=1)
    got = onnx_session(path).run(None, {"images": x.numpy()})[0]
    want = deploy_model(x)[0]
    assert got.shape == tuple(want.shape) == (1, 3 * (12 * 16 + 6 * 8), 8)
    _close(got, want, 128)
    report = verify_onnx(path, deploy_model, x)
    assert report["scores_max_abs_diff"] < 1e-4 and report["boxes_max_rel_diff"] < 1e-4
    assert onnx.load(str(path)).opset_import[0].version >= 17


def test_dynamic_export_runs_at_another_batch_and_size(deploy_model, tmp_path: Path) -> None:
    path = export_onnx(deploy_model, tmp_path / "m.onnx", img_size=96, dynamic=True)
    session = onnx_session(path)
    for batch, h, w in ((3, 64, 160), (1, 128, 96)):
        x = probe_images(batch, h, w, seed=h)
        got = session.run(None, {"images": x.numpy()})[0]
        _close(got, deploy_model(x)[0], max(h, w))


def test_end2end_graph_keeps_the_detections_of_our_nms(deploy_model, tmp_path: Path) -> None:
    conf, iou, max_det = 0.05, 0.45, 30
    path = export_onnx(deploy_model, tmp_path / "e2e.onnx", 96, dynamic=True, end2end=True,
                       conf_thres=conf, iou_thres=iou, max_det=max_det)  # fmt: skip
    assert "NonMaxSuppression" in {node.op_type for node in onnx.load(str(path)).graph.node}
    x = probe_images(3, 96, 128, seed=7)
    num, boxes, scores, classes = onnx_session(path).run(None, {"images": x.numpy()})
    assert num.shape == (3, 1) and boxes.shape == (3, max_det, 4) and classes.dtype == np.int64
    pred = deploy_model(x)[0]
    reference = non_max_suppression(pred, conf, iou, multi_label=False, max_det=max_det)
    candidates = [(p[:, 5:] * p[:, 4:5]).max(1).values.gt(conf).sum().item() for p in pred]
    for i, det in enumerate(reference):
        n = int(num[i, 0])
        assert n == len(det) > 0
        assert n < candidates[i]  # NMS did remove boxes: the comparison is not trivial
        np.testing.assert_array_equal(classes[i, :n], det[:, 5].long().numpy())
        np.testing.assert_allclose(scores[i, :n], det[:, 4].detach().numpy(), rtol=0, atol=1e-4)
        np.testing.assert_allclose(boxes[i, :n], det[:, :4].detach().numpy(), rtol=1e-4, atol=1e-4 * 128)
        assert (classes[i, n:] == -1).all() and (scores[i, n:] == 0).all()
    # the eager module (used by verify_onnx) is the same computation
    eager = End2End(deploy_model, conf, iou, max_det)(x)
    np.testing.assert_array_equal(eager[0].numpy(), num)


def test_an_img_off_the_stride_is_exported_rounded_up_as_the_reference_does(
    deploy_model, tmp_path: Path, caplog
) -> None:
    """export.py rounds --img-size up to a multiple of the largest stride (check_img_size): 80 -> 96."""
    from yolov7lib.deploy import export_and_verify

    with caplog.at_level("WARNING", logger="yolov7lib.engine.weights"):
        report = export_and_verify(deploy_model, tmp_path / "m.onnx", img_size=80)
    dims = [
        d.dim_value for d in onnx.load(str(tmp_path / "m.onnx")).graph.input[0].type.tensor_type.shape.dim
    ]
    assert dims == [1, 3, 96, 96] and [(c["height"], c["width"]) for c in report["checks"]] == [(96, 96)]
    assert "--img 80 is not a multiple of the stride 32; using 96" in caplog.text


def test_a_height_and_width_export_a_non_square_input_as_the_reference_does(
    deploy_model, tmp_path: Path, caplog, capsys
) -> None:
    """export.py --img-size H W: a fixed (H, W) input, each side rounded up to the grid (40 -> 64); the
    command took one square side only."""
    import json

    import yaml
    from inference_models import SMALL_CFG

    from yolov7lib.cli import main
    from yolov7lib.deploy import export_and_verify

    with caplog.at_level("WARNING", logger="yolov7lib.engine.weights"):
        report = export_and_verify(deploy_model, tmp_path / "m.onnx", img_size=(40, 96), dynamic=True)
    assert [(c["batch"], c["height"], c["width"]) for c in report["checks"]] == [(1, 64, 96), (2, 64, 64)]
    assert "--img 40 is not a multiple of the stride 32; using 64" in caplog.text
    cfg = tmp_path / "small.yaml"
    cfg.write_text(yaml.safe_dump(SMALL_CFG))
    out = tmp_path / "cli.onnx"
    assert main(["export", "--model", str(cfg), "--img", "64", "96", "--out", str(out), "--json"]) == 0
    check = json.loads(capsys.readouterr().out)["checks"]
    assert [(c["height"], c["width"]) for c in check] == [(64, 96)]
    session_input = onnx_session(out).get_inputs()[0]
    assert session_input.shape == [1, 3, 64, 96]
    assert main(["export", "--model", str(cfg), "--img", "64", "96", "128"]) == 2
    assert "--img takes one side, or height and width" in capsys.readouterr().err


def test_the_graph_carries_the_class_names_and_stride_of_a_custom_checkpoint(tmp_path: Path) -> None:
    """A checkpoint trained with its own class count and names: the exported file says what its class
    ids mean (metadata `names`, JSON) and the grid its input sides must be multiples of (`stride`); the
    file held neither, so the names were lost on the way to deployment."""
    import json

    from inference_models import checkpoint_of

    from yolov7lib.engine.checkpoint import save_checkpoint
    from yolov7lib.engine.weights import load_model

    names = ["kettle", "mug", "yes", "spoon", "fork"]
    weights = save_checkpoint(checkpoint_of(small_model(nc=5), names), tmp_path / "best.pt")
    model = load_model(weights)
    for dynamic, end2end in ((False, False), (True, True)):
        path = export_onnx(model, tmp_path / f"m{dynamic}.onnx", 64, dynamic=dynamic, end2end=end2end)
        meta = onnx_session(path).get_modelmeta().custom_metadata_map
        assert json.loads(meta["names"]) == names and int(meta["stride"]) == int(model.stride.max()) == 16


def test_export_refuses_to_overwrite_and_old_opsets(deploy_model, tmp_path: Path) -> None:
    target = tmp_path / "user.onnx"
    target.write_bytes(b"user data")
    with pytest.raises(FileExistsError):
        export_onnx(deploy_model, target, 64)
    assert target.read_bytes() == b"user data"
    with pytest.raises(ValueError, match="opset"):
        export_onnx(deploy_model, tmp_path / "old.onnx", 64, opset=12)
    assert not (tmp_path / "old.onnx").exists()


def test_an_opset_above_torchs_highest_is_refused_before_torch_runs(deploy_model, tmp_path, capfd) -> None:
    """torch raised 'Unsupported onnx_opset_version' only after printing the whole TorchScript graph
    (hundreds of lines) to stderr; the highest opset itself exports."""
    with pytest.raises(ValueError, match=f"opset {MAX_OPSET + 1} is above {MAX_OPSET}"):
        export_onnx(deploy_model, tmp_path / "new.onnx", 64, opset=MAX_OPSET + 1)
    assert not list(tmp_path.iterdir()) and "graph" not in capfd.readouterr().err
    path = export_onnx(deploy_model, tmp_path / "max.onnx", 64, opset=MAX_OPSET)
    assert onnx.load(str(path)).opset_import[0].version == MAX_OPSET


@pytest.mark.slow
def test_yolov7_tiny_cli_export_with_end2end_and_dynamic(tmp_path: Path, capsys) -> None:
    """The command on a real architecture: checkpoint in, verified ONNX out (ELAN, SPPCSPC, IDetect)."""
    from inference_models import checkpoint_of

    from yolov7lib.cli import main
    from yolov7lib.engine.checkpoint import save_checkpoint

    model = tiny_model(nc=2, objectness_shift=3.0)
    weights = save_checkpoint(checkpoint_of(model, ["a", "b"]), tmp_path / "best.pt")
    assert main(["export", "--weights", str(weights), "--img", "128", "--dynamic", "--json"]) == 0
    import json

    report = json.loads(capsys.readouterr().out)
    assert report["path"] == str(tmp_path / "best.onnx")
    for check in report["checks"]:
        assert check["scores_max_abs_diff"] < 1e-4 and check["boxes_max_rel_diff"] < 1e-4
    assert main(["export", "--weights", str(weights), "--img", "128", "--end2end", "--conf", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "best-end2end.onnx" in out and "differ" not in out


def test_export_and_verify_leave_the_callers_model_as_it_was(tmp_path: Path) -> None:
    model = reparameterize(small_model(nc=3, objectness_shift=3.0)).double().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    path = export_onnx(model, tmp_path / "m.onnx", img_size=64)
    report = verify_onnx(path, model, probe_images(1, 64, 64))
    assert report["scores_max_abs_diff"] < 1e-4  # checked as float32, against the float32 export
    assert model.training and all(p.dtype == torch.float64 for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


class _FixedPredictions(torch.nn.Module):
    """Returns given decoded predictions (B, N, 5 + nc), whatever the images."""

    def __init__(self, pred: torch.Tensor) -> None:
        super().__init__()
        self.pred = pred

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.pred,)


def test_end2end_in_half_precision_keeps_classes_apart_like_float32() -> None:
    """Class offsets (4096 per class) overflow float16 beyond class 15; NMS runs in float32 instead."""
    gen = torch.Generator().manual_seed(0)
    n, nc = 60, 40
    xy = torch.rand(1, n, 2, generator=gen) * 60 + 20
    wh = torch.rand(1, n, 2, generator=gen) * 20 + 10
    scores = torch.rand(1, n, 1 + nc, generator=gen)
    pred = torch.cat((xy, wh, scores), 2)
    full = End2End(_FixedPredictions(pred.half().float()), 0.1, 0.45, 50)(torch.zeros(1))
    half = End2End(_FixedPredictions(pred.half()), 0.1, 0.45, 50)(torch.zeros(1))
    assert int(full[0]) > 10 and int(half[0]) == int(full[0])
    torch.testing.assert_close(half[3], full[3])  # the same boxes of the same classes kept
    torch.testing.assert_close(half[1].float(), full[1], rtol=0, atol=0.07)  # float16 corners near 100 px


def _rows(*rows: list[float]) -> torch.Tensor:
    return torch.tensor([list(r) for r in rows], dtype=torch.float32).unsqueeze(0)


def test_end2end_drops_a_score_equal_to_the_threshold() -> None:
    """Strict `>` on the confidence, as ops.non_max_suppression and ONNX NonMaxSuppression."""
    pred = _rows(  # disjoint boxes; confidence = objectness x class score = 0.5 exactly for the first
        [20, 20, 10, 10, 1.0, 0.5, 0.1],
        [60, 60, 10, 10, 1.0, 0.1, 0.75],
        [100, 100, 10, 10, 0.5, 0.25, 1.0],
    )
    num, _, scores, classes = End2End(_FixedPredictions(pred), conf_thres=0.5)(torch.zeros(1))
    reference = non_max_suppression(pred, 0.5, 0.45, multi_label=False)[0]
    assert int(num[0, 0]) == len(reference) == 1
    assert scores[0, 0].item() == 0.75 and classes[0, 0].item() == 1 and classes[0, 1].item() == -1


def test_end2end_single_class_confidence_is_the_objectness() -> None:
    gen = torch.Generator().manual_seed(0)
    n = 40
    xy, wh = torch.rand(1, n, 2, generator=gen) * 80 + 10, torch.rand(1, n, 2, generator=gen) * 20 + 5
    obj_cls = torch.rand(1, n, 2, generator=gen)
    pred = torch.cat((xy, wh, obj_cls), 2)
    num, boxes, scores, classes = End2End(_FixedPredictions(pred), 0.3, 0.45, 100)(torch.zeros(1))
    reference = non_max_suppression(pred, 0.3, 0.45, multi_label=False)[0]
    n_ref = len(reference)
    assert int(num[0, 0]) == n_ref > 5
    torch.testing.assert_close(scores[0, :n_ref], reference[:, 4])
    torch.testing.assert_close(boxes[0, :n_ref], reference[:, :4])
    assert (classes[0, :n_ref] == 0).all()


def test_end2end_orders_equal_scores_as_nms_returned_them() -> None:
    """Equal scores keep the order of the NMS rows (the earlier row first), as the module documents."""
    tied = [[20 + 30 * i, 20, 10, 10, 1.0, 0.6, 0.0] for i in range(4)]  # disjoint, same class and score
    pred = _rows(*tied, [200, 200, 10, 10, 1.0, 0.0, 0.9])
    num, boxes, scores, _ = End2End(_FixedPredictions(pred), 0.25, 0.45, 10)(torch.zeros(1))
    xy, wh = pred[..., :2], pred[..., 2:4]
    conf, cls = (pred[..., 5:] * pred[..., 4:5]).max(-1)
    xyxy = torch.cat((xy - wh / 2, xy + wh / 2), -1) + cls.unsqueeze(-1) * CLASS_OFFSET
    order = nms_indices(xyxy, conf, 10, 0.45, 0.25)[:, 2]
    tied = order[conf[0, order] == 0.6]
    assert len(tied) == 4
    assert int(num[0, 0]) == 5 and scores[0, 0].item() == pytest.approx(0.9)
    torch.testing.assert_close(boxes[0, 1:5], torch.cat((xy - wh / 2, xy + wh / 2), -1)[0, tied])


def _largest_intermediate(module: torch.nn.Module, x: torch.Tensor) -> int:
    """The most elements of any tensor an operation produces while `module(x)` runs."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Largest(TorchDispatchMode):
        numel = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, tuple | list) else (out,):
                if isinstance(t, torch.Tensor):
                    Largest.numel = max(Largest.numel, t.numel())
            return out

    with Largest():
        module(x)
    return Largest.numel


def test_end2end_memory_grows_with_the_batch_not_with_its_square() -> None:
    """Each kept box is ranked among its own image's boxes: B x max_det x max_det comparisons, where the
    graph compared every kept box of the batch with every other, (B x max_det)^2 (batch 8 with
    --max-det 1000 took 2.4 s and 0.7 GB more in onnxruntime than one image's 0.09 s)."""
    gen = torch.Generator().manual_seed(0)
    centres = torch.stack(torch.meshgrid(torch.arange(20.0), torch.arange(20.0), indexing="ij"), -1)
    xy = centres.reshape(1, 400, 2) * 20 + 10  # 400 disjoint 8-pixel boxes: NMS keeps every one
    pred = torch.cat((xy, torch.full((1, 400, 2), 8.0), torch.rand(1, 400, 3, generator=gen)), 2)
    sizes = {}
    for batch in (8, 16):
        module = End2End(_FixedPredictions(pred.repeat(batch, 1, 1)), 0.0, 0.45, 100)
        assert int(module(torch.zeros(batch))[0].sum()) == batch * 100
        sizes[batch] = _largest_intermediate(module, torch.zeros(batch))
    assert sizes[16] <= 2 * sizes[8]
