"""ONNX export of the deploy model (Sections 4.1 and 4.3: the re-parameterized inference graph) and its check.

The exported graph is the fused deploy model with the head's box decoding: input `images` (B, 3, H, W)
float32 RGB in [0, 1], output `output` (B, N, 5 + nc) with xywh in input pixels and sigmoid objectness
and class scores, the tensor `ops.non_max_suppression` takes. `end2end=True` appends NMS
(:mod:`yolov7lib.deploy.end2end`). `dynamic=True` leaves batch, height and width free. The file's
metadata holds the class names (`names`, a JSON list) and the largest stride (`stride`).

The TorchScript-based exporter (`torch.onnx.export(..., dynamo=False)`) is used: the torch.export-based
one needs `onnxscript`, which the kit does not depend on. Files are written to a temporary name beside
the target and renamed, so an interrupted export leaves no partial file.
"""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from yolov7lib.deploy.end2end import End2End
from yolov7lib.engine.checkpoint import new_file_mode

__all__ = ["MAX_OPSET", "MIN_OPSET", "export_onnx", "onnx_session", "verify_onnx"]

MIN_OPSET = 17
MAX_OPSET: int = getattr(getattr(torch.onnx, "_constants", None), "ONNX_MAX_OPSET", MIN_OPSET)
"""The highest opset the installed torch exports (a higher one fails inside torch after printing the
whole TorchScript graph)."""
END2END_OUTPUTS = ("num_dets", "boxes", "scores", "classes")


class DecodedOutput(nn.Module):
    """The model's decoded predictions only (eval mode returns them with the raw maps)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)[0]


def export_onnx(
    model: nn.Module,
    path: str | Path,
    img_size: int | tuple[int, int] = 640,
    batch: int = 1,
    dynamic: bool = False,
    end2end: bool = False,
    opset: int = MIN_OPSET,
    conf_thres: float = 0.25,
    iou_thres: float = 0.45,
    max_det: int = 100,
) -> Path:
    """Export `model` (a deploy model in eval mode, float32, CPU) to `path`; return the path.

    Refuses to overwrite an existing file. `img_size` is (height, width) or one side.
    """
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} is below {MIN_OPSET}, the lowest the kit exports")
    if opset > MAX_OPSET:
        raise ValueError(f"opset {opset} is above {MAX_OPSET}, the highest torch {torch.__version__} exports")
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; not overwriting it (choose another --out)")
    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    model = _float32_cpu_copy(model)
    wrapped = (End2End(model, conf_thres, iou_thres, max_det) if end2end else DecodedOutput(model)).eval()
    outputs = list(END2END_OUTPUTS) if end2end else ["output"]
    axes = None
    if dynamic:
        axes = {"images": {0: "batch", 2: "height", 3: "width"}}
        if end2end:
            axes.update({name: {0: "batch"} for name in outputs})
        else:
            axes["output"] = {0: "batch", 1: "anchors"}
    images = torch.zeros(batch, 3, h, w)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", (DeprecationWarning, torch.jit.TracerWarning, UserWarning))
            torch.onnx.export(
                wrapped, (images,), tmp, dynamo=False, opset_version=opset, input_names=["images"],
                output_names=outputs, dynamic_axes=axes, do_constant_folding=True,
            )  # fmt: skip
            example = wrapped(images) if axes else None
        _finish_graph(Path(tmp), model, example, outputs, axes or {})
        os.chmod(tmp, new_file_mode())  # mkstemp's file is private; the export is an ordinary new file
        _publish(Path(tmp), path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def _finish_graph(
    path: Path,
    model: nn.Module,
    example: torch.Tensor | tuple[torch.Tensor, ...] | None,
    names: list[str],
    axes: dict,
) -> None:
    """Store the class names (JSON list) and the largest stride in the file's metadata (`names`,
    `stride`), so that a deployed graph tells what its class ids mean; and, for a dynamic export (given
    its `example` outputs), write the sizes that do not vary (5 + nc; max_det and 4) into the declared
    output shapes: the exporter names them after internal nodes ('ScatterNDboxes_dim_1'), so that tools
    reading the declared shapes (onnxruntime's get_outputs, TensorRT) could not see them."""
    import json

    import onnx

    graph = onnx.load(str(path))
    meta = {"stride": str(int(model.stride.max()))} if hasattr(model, "stride") else {}
    if getattr(model, "names", None) is not None:
        meta["names"] = json.dumps([str(n) for n in model.names])
    onnx.helper.set_model_props(graph, meta)
    if example is not None:
        tensors = example if isinstance(example, tuple) else (example,)
        for value, name, tensor in zip(graph.graph.output, names, tensors, strict=True):
            dims = value.type.tensor_type.shape.dim
            for i, (dim, size) in enumerate(zip(dims, tensor.shape, strict=True)):
                if i not in axes.get(name, {}):
                    dim.dim_value = int(size)
    onnx.save(graph, str(path))


def _publish(tmp: Path, path: Path) -> None:
    """Give the finished file `tmp` the name `path` unless a file has that name by now (one written while
    the graph was exported included): a hard link fails where a rename would replace it."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(f"{path} appeared during the export; not overwriting it") from None
    except OSError:  # a file system without hard links: check, then rename
        if path.exists():
            raise FileExistsError(f"{path} appeared during the export; not overwriting it") from None
        os.replace(tmp, path)


def onnx_session(path: str | Path, threads: int | None = None):  # -> onnxruntime.InferenceSession
    """An onnxruntime CPU session with all graph optimisations on and `threads` intra-op threads
    (default: torch's thread count); idle threads do not spin (they would steal the CPU from others)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _differences(
    got_boxes: np.ndarray, want_boxes: np.ndarray, got_scores: np.ndarray, want_scores: np.ndarray, side: int
) -> dict[str, float]:
    box = np.abs(got_boxes - want_boxes)
    return {
        "scores_max_abs_diff": float(np.abs(got_scores - want_scores).max(initial=0.0)),
        "boxes_max_abs_diff_px": float(box.max(initial=0.0)),
        "boxes_max_rel_diff": float((box / (side + np.abs(want_boxes))).max(initial=0.0)),
    }


@torch.no_grad()
def _float32_cpu_copy(model: nn.Module) -> nn.Module:
    """The model as exported and checked (float32, CPU, eval mode), leaving the caller's model as it was."""
    return copy.deepcopy(model).float().cpu().eval()


@torch.no_grad()
def verify_onnx(
    path: str | Path,
    model: nn.Module,
    images: torch.Tensor,
    end2end: bool = False,
    conf_thres: float = 0.25,
    iou_thres: float = 0.45,
    max_det: int = 100,
) -> dict[str, float | bool]:
    """Run the ONNX file in onnxruntime and the model in PyTorch on `images` and compare.

    Returns the largest absolute difference of the scores (objectness and classes, or the kept
    confidences), the largest difference of the boxes in pixels and relative to (image's long side +
    |value|) (positions are resolved relative to the image, sizes relative to themselves); for end2end
    also `same_detections`: whether both keep the same number of boxes of the same classes in each
    image, and, when they do, `detections`: how many were compared (0 when no box of `images` scores
    above `conf_thres`: the differences are then 0 for want of anything to compare). float32 resolves
    ~1e-5 relative: PyTorch itself differs from a float64 pass by that much.
    """
    side = max(images.shape[2:])
    session = onnx_session(path)
    got = session.run(None, {"images": images.cpu().numpy()})
    model = _float32_cpu_copy(model)
    if not end2end:
        want = DecodedOutput(model)(images.cpu()).numpy()
        return _differences(got[0][..., :4], want[..., :4], got[0][..., 4:], want[..., 4:], side)
    want = [t.numpy() for t in End2End(model, conf_thres, iou_thres, max_det)(images.cpu())]
    same = bool(np.array_equal(got[0], want[0]) and np.array_equal(got[3], want[3]))
    if not same:
        return {"same_detections": False}
    detections = int(got[0].sum())
    return {"same_detections": True, "detections": detections,
            **_differences(got[1], want[1], got[2], want[2], side)}  # fmt: skip


def probe_images(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Smooth random images in [0, 1] (upsampled coarse noise): unlike white noise they give a
    network's predictions a spatial structure, so that scores do not tie across positions."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, max(height // 16, 2), max(width // 16, 2), generator=g)
    return nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)


def export_and_verify(
    model: nn.Module,
    path: str | Path,
    img_size: int | tuple[int, int] = 640,
    batch: int = 1,
    dynamic: bool = False,
    end2end: bool = False,
    opset: int = MIN_OPSET,
    conf_thres: float = 0.25,
    iou_thres: float = 0.45,
    max_det: int = 100,
) -> dict[str, object]:
    """`export_onnx`, then `verify_onnx` at the exported shape (and, when dynamic, at batch + 1 and a
    width one stride smaller); returns a report of the checks. `img_size` is one side or (height,
    width), as the reference's export.py --img-size; each side is rounded up to a multiple of the
    largest stride, as it does (check_img_size)."""
    from yolov7lib.engine.weights import fit_img_size

    sides = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    if len(sides) != 2:
        raise ValueError(f"img_size is one side or (height, width), not {img_size!r}")
    (h, stride), (w, _) = (fit_img_size(side, model) for side in sides)
    path = export_onnx(model, path, (h, w), batch, dynamic, end2end, opset, conf_thres, iou_thres, max_det)
    shapes = [(batch, h, w)]
    if dynamic:
        shapes.append((batch + 1, h, max(w - stride, stride)))
    nms = {"conf_thres": conf_thres, "iou_thres": iou_thres, "max_det": max_det}
    checks = []
    for b, hb, wb in shapes:
        result = verify_onnx(path, model, probe_images(b, hb, wb), end2end, **nms)
        checks.append({"batch": b, "height": hb, "width": wb, **result})
    return {"path": str(path), "size_mb": path.stat().st_size / 1e6, "checks": checks}
