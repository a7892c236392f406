"""`yolov7 bench`: inference speed as Table 9 measures it, plus how much of the machine that uses.

Protocol (Table 9, "FPS ... batch size 1, without TensorRT"): the fused deploy model, a letterboxed
input of the requested square size, warm-up passes, then the median of N timed passes; the batch-32
row gives the average time per image of a batch of 32. Each row also gives the achieved GFLOP/s (the
deploy model's FLOPs from `models.model_info` x images per second) and its fraction of a matrix-product
peak (a 2048 x 2048 float32 product, median of runs) measured on the same device in the same run.

Backends: `eager` (PyTorch on the fused deploy model), `compile` (`torch.compile` of it; compile time
reported apart; a failure is reported in its row), `onnxruntime` (the `yolov7 export` graph in
onnxruntime's CPU provider, all graph optimisations, as many threads as torch).
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm import tqdm

BACKENDS = ("eager", "compile", "onnxruntime")

__all__ = ["BACKENDS", "BenchRow", "format_rows", "matmul_peak", "run_bench"]


@dataclass
class BenchRow:
    """One (model, backend, batch) measurement; `error` is set (and the timings None) when it failed."""

    model: str
    backend: str
    batch: int
    img: int
    ms_per_image: float | None
    images_per_s: float | None
    gflops_per_s: float | None
    peak_fraction: float | None
    ms_per_batch: float | None = None
    gflops_per_image: float = 0.0
    peak_gflops_per_s: float = 0.0
    compile_s: float | None = None
    runs: int = 0
    warmup: int = 0
    threads: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    load_avg: tuple[float, float, float] | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_seconds(fn: Callable[[], Any], runs: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@torch.no_grad()
def matmul_peak(
    device: torch.device | str = "cpu", n: int = 2048, runs: int = 10, dtype: torch.dtype = torch.float32
) -> float:
    """GFLOP/s of an n x n matrix product (2 n^3 FLOPs), median of `runs` after two warm-up products."""
    device = torch.device(device)
    g = torch.Generator().manual_seed(0)
    a = torch.rand(n, n, generator=g).to(device, dtype)
    b = torch.rand(n, n, generator=g).to(device, dtype)
    seconds = _median_seconds(lambda: a @ b, runs, 2, device)
    return 2 * n**3 / seconds / 1e9


def letterboxed_input(img: int, batch: int, seed: int = 0) -> torch.Tensor:
    """A batch of one generated 4:3 photo-like image letterboxed to img x img (uint8 -> [0, 1] float)."""
    from yolov7lib.data.augment import letterbox

    rng = np.random.default_rng(seed)
    h0, w0 = 480, 640
    coarse = rng.integers(0, 256, (h0 // 16, w0 // 16, 3), dtype=np.uint8)
    photo = cv2.resize(coarse, (w0, h0), interpolation=cv2.INTER_LINEAR)
    boxed, _, _ = letterbox(photo, img, auto=False)
    x = torch.from_numpy(np.ascontiguousarray(boxed.transpose(2, 0, 1))).float() / 255.0
    return x.unsqueeze(0).repeat(batch, 1, 1, 1)


def _eager(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], Any]:
    return lambda: model(x)


def _onnxruntime(model: torch.nn.Module, x: torch.Tensor, workdir: Path, threads: int) -> Callable[[], Any]:
    from yolov7lib.deploy import export_onnx, onnx_session

    path = export_onnx(model.float().cpu(), workdir / f"bench_{x.shape[0]}_{x.shape[2]}.onnx", x.shape[2],
                       batch=x.shape[0])  # fmt: skip
    session = onnx_session(path, threads)
    feed = {"images": x.cpu().numpy()}
    return lambda: session.run(None, feed)


def run_bench(
    model_name: str | None = None,
    weights: str | None = None,
    img: int = 640,
    batches: Sequence[int] = (1, 32),
    backends: Sequence[str] = ("eager", "onnxruntime"),
    device: str = "cpu",
    half: bool = False,
    runs: int = 10,
    warmup: int = 3,
    threads: int | None = None,
    progress: bool = True,
) -> list[BenchRow]:
    """Measure every (backend, batch) pair; return one row each (errors reported in their row)."""
    from yolov7lib.engine.distributed import select_device
    from yolov7lib.engine.weights import load_model
    from yolov7lib.models import model_info

    unknown = set(backends) - set(BACKENDS)
    if unknown:
        raise ValueError(
            f"unknown backend(s) {', '.join(sorted(unknown))}; choose from {', '.join(BACKENDS)}"
        )
    if threads:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    dev = select_device(device)
    half = half and dev.type == "cuda"
    model = load_model(weights, model_name, device=dev)  # fused deploy graph, eval mode
    name = Path(model_name).name.removesuffix(".yaml") if model_name else Path(weights or "model").stem
    grid = max(int(model.stride.max()), 32)
    img = math.ceil(img / grid) * grid
    gflops = model_info(model, img).gflops
    dtype = torch.float16 if half else torch.float32
    model = model.to(dtype)
    peak = matmul_peak(dev, dtype=dtype)

    rows: list[BenchRow] = []
    # torch.compile goes last: its compiler worker processes stay alive and would share the CPU
    jobs = [(b, backend) for b in batches for backend in dict.fromkeys(backends) if backend != "compile"]
    jobs += [(b, "compile") for b in batches if "compile" in backends]
    with tempfile.TemporaryDirectory(prefix="yolov7-bench-") as tmp, torch.no_grad():
        for batch, backend in tqdm(jobs, desc="bench", disable=not progress, leave=False):
            x = letterboxed_input(img, batch).to(dev, dtype)
            row = BenchRow(name, backend, batch, img, None, None, None, None, gflops_per_image=gflops,
                           peak_gflops_per_s=peak, runs=runs, warmup=warmup, threads=threads,
                           device=str(dev), dtype=str(dtype).removeprefix("torch."))  # fmt: skip
            try:
                if backend == "eager":
                    fn = _eager(model, x)
                elif backend == "compile":
                    compiled = torch.compile(model)
                    t0 = time.perf_counter()
                    compiled(x)  # the first call compiles
                    _sync(dev)
                    row.compile_s = time.perf_counter() - t0
                    fn = _eager(compiled, x)
                else:
                    if dev.type != "cpu" or half:
                        raise RuntimeError("the onnxruntime backend is measured on the CPU in float32 only")
                    fn = _onnxruntime(model, x, Path(tmp), threads)
                seconds = _median_seconds(fn, runs, warmup, dev)
            except Exception as err:  # a backend that cannot run here is reported, not fatal
                row.error = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err) else ''}"[
                    :300
                ]
            else:
                row.ms_per_batch = 1e3 * seconds
                row.ms_per_image = row.ms_per_batch / batch
                row.images_per_s = batch / seconds
                row.gflops_per_s = gflops * row.images_per_s
                row.peak_fraction = row.gflops_per_s / peak
            row.load_avg = tuple(round(v, 2) for v in os.getloadavg())
            rows.append(row)
            if backend == "compile":
                torch._dynamo.reset()  # free the compiled graphs before the next measurement
    return rows


def format_rows(rows: Sequence[BenchRow]) -> str:
    """A table of the rows, with the speed-up of each backend over eager at the same batch."""
    eager = {r.batch: r.ms_per_image for r in rows if r.backend == "eager" and r.ms_per_image}
    lines = [
        f"{'model':<14s}{'backend':<13s}{'batch':>6s}{'img':>6s}{'ms/img':>10s}{'img/s':>9s}"
        f"{'GFLOP/s':>9s}{'peak':>7s}{'vs eager':>10s}  notes"
    ]
    for r in rows:
        if r.error:
            lines.append(f"{r.model:<14s}{r.backend:<13s}{r.batch:>6d}{r.img:>6d}{'-':>10s}{'-':>9s}"
                         f"{'-':>9s}{'-':>7s}{'-':>10s}  failed: {r.error}")  # fmt: skip
            continue
        speedup = eager.get(r.batch)
        ratio = f"{speedup / r.ms_per_image:.2f}x" if speedup else "-"
        note = f"compile {r.compile_s:.1f} s" if r.compile_s is not None else ""
        lines.append(
            f"{r.model:<14s}{r.backend:<13s}{r.batch:>6d}{r.img:>6d}{r.ms_per_image:>10.1f}"
            f"{r.images_per_s:>9.2f}{r.gflops_per_s:>9.1f}{r.peak_fraction:>7.1%}{ratio:>10s}  {note}"
        )
    if rows:
        r = rows[0]
        lines.append(
            f"{r.gflops_per_image:.2f} GFLOPs per image (fused deploy graph); matmul peak "
            f"{r.peak_gflops_per_s:.1f} GFLOP/s ({r.dtype}, {r.device}, {r.threads} threads); "
            f"median of {r.runs} runs after {r.warmup} warm-up; load average {r.load_avg}"
        )
    return "\n".join(lines)
