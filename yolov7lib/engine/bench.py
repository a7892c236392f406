"""`yolov7 bench`: inference speed as Table 9 measures it, plus how much of the machine that uses.

Protocol (Table 9, "FPS ... batch size 1, without TensorRT"): the fused deploy model, a letterboxed
input of the requested square size, warm-up passes, then the median of N timed passes; the batch-32
row gives the average time per image of a batch of 32. Each row also gives the achieved GFLOP/s (the
deploy model's FLOPs from `models.model_info` x images per second) and its fraction of a matrix-product
peak (a 2048 x 2048 product in the same precision, median of runs) measured on the same device in the
same run. The timed passes are interleaved: each of the N rounds runs every backend once and one
matrix product, so that a shared machine's changing load weighs on all of them alike.

Backends: `eager` (PyTorch on the fused deploy model), `compile` (`torch.compile` of it; compile time
reported apart; a failure is reported in its row), `onnxruntime` (the `yolov7 export` graph in
onnxruntime's CPU provider, all graph optimisations, as many threads as torch).
"""

from __future__ import annotations

import os
import platform
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

from yolov7lib.engine.distributed import select_device, synchronize

BACKENDS = ("eager", "compile", "onnxruntime")

__all__ = ["BACKENDS", "BenchRow", "describe_device", "format_rows", "matmul_peak", "run_bench"]


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
    omp_wait_policy: str = "default"  # OMP_WAIT_POLICY of this process (PASSIVE: no spin-waiting)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe_device(device: str = "cpu") -> str:
    """The machine a measurement ran on, in words: the GPU's name, or the CPU's model and core count."""
    dev = select_device(device)  # the device `run_bench` measures on for the same `device`
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    name = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} threads"


def _median_seconds(fn: Callable[[], Any], runs: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


MATMUL_N = 2048
MATMUL_FLOPS = 2 * MATMUL_N**3


def _matmul(device: torch.device, dtype: torch.dtype, n: int = MATMUL_N) -> Callable[[], Any]:
    g = torch.Generator().manual_seed(0)
    a = torch.rand(n, n, generator=g).to(device, dtype)
    b = torch.rand(n, n, generator=g).to(device, dtype)
    return lambda: a @ b


@torch.no_grad()
def matmul_peak(
    device: torch.device | str = "cpu", n: int = MATMUL_N, runs: int = 10, dtype: torch.dtype = torch.float32
) -> float:
    """GFLOP/s of an n x n matrix product (2 n^3 FLOPs), median of `runs` after two warm-up products."""
    device = torch.device(device)
    seconds = _median_seconds(_matmul(device, dtype, n), runs, 2, device)
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
    """Measure every (backend, batch) pair once; return one row each (errors reported in their row).

    `threads` sets PyTorch's intra-op thread count for the measurements only; the caller's is restored.
    """
    unknown = set(backends) - set(BACKENDS)
    if not backends:
        raise ValueError(f"no backend given; choose from {', '.join(BACKENDS)}")
    if unknown:
        raise ValueError(
            f"unknown backend(s) {', '.join(sorted(unknown))}; choose from {', '.join(BACKENDS)}"
        )
    if runs < 1 or warmup < 0 or (threads is not None and threads < 1):
        raise ValueError(f"runs must be at least 1, warmup at least 0 and threads at least 1 "
                         f"(got runs {runs}, warmup {warmup}, threads {threads})")  # fmt: skip
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _measure(model_name, weights, img, batches, backends, device, half, runs, warmup, progress)
    finally:
        torch.set_num_threads(previous_threads)


def _measure(
    model_name: str | None,
    weights: str | None,
    img: int,
    batches: Sequence[int],
    backends: Sequence[str],
    device: str,
    half: bool,
    runs: int,
    warmup: int,
    progress: bool,
) -> list[BenchRow]:
    """The measurements of `run_bench`, at the thread count it set."""
    from yolov7lib.engine.weights import fit_img_size, load_model
    from yolov7lib.models import model_info

    threads = torch.get_num_threads()
    dev = select_device(device)
    half = half and dev.type == "cuda"
    model = load_model(weights, model_name, device=dev)  # fused deploy graph, eval mode
    name = Path(model_name).name.removesuffix(".yaml") if model_name else Path(weights or "model").stem
    img, _ = fit_img_size(img, model)
    gflops = model_info(model, img).gflops
    dtype = torch.float16 if half else torch.float32
    model = model.to(dtype)
    rows: list[BenchRow] = []
    with tempfile.TemporaryDirectory(prefix="yolov7-bench-") as tmp, torch.no_grad():
        for batch in dict.fromkeys(batches):  # a batch size given twice is measured once
            x = letterboxed_input(img, batch).to(dev, dtype)
            ready: dict[str, Callable[[], Any]] = {}
            batch_rows: dict[str, BenchRow] = {}
            for backend in dict.fromkeys(backends):
                row = BenchRow(name, backend, batch, img, None, None, None, None, gflops_per_image=gflops,
                               runs=runs, warmup=warmup, threads=threads, device=str(dev),
                               dtype=str(dtype).removeprefix("torch."))  # fmt: skip
                batch_rows[backend] = row
                try:
                    ready[backend] = _prepare(backend, model, x, dev, Path(tmp), threads, row)
                    for _ in range(warmup):
                        ready[backend]()
                except Exception as err:  # a backend that cannot run here is reported, not fatal
                    row.error = _describe(err)
                    ready.pop(backend, None)
            seconds, peak = _interleaved(
                ready, batch_rows, runs, dev, dtype, progress, f"bench batch {batch}"
            )
            for backend, row in batch_rows.items():
                row.peak_gflops_per_s = peak
                row.load_avg = tuple(round(v, 2) for v in os.getloadavg())
                row.omp_wait_policy = os.environ.get("OMP_WAIT_POLICY", "default")
                if backend in seconds:
                    row.ms_per_batch = 1e3 * seconds[backend]
                    row.ms_per_image = row.ms_per_batch / batch
                    row.images_per_s = batch / seconds[backend]
                    row.gflops_per_s = gflops * row.images_per_s
                    row.peak_fraction = row.gflops_per_s / peak
                rows.append(row)
            if "compile" in ready:
                torch._dynamo.reset()  # free the compiled graphs
    return rows


def _describe(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"[:300]


def _prepare(
    backend: str, model: torch.nn.Module, x: torch.Tensor, dev: torch.device, workdir: Path, threads: int,
    row: BenchRow,
) -> Callable[[], Any]:  # fmt: skip
    """The timed callable of a backend (compiling or exporting first; compile time goes in `row`)."""
    if backend == "eager":
        return _eager(model, x)
    if backend == "compile":
        compiled = torch.compile(model)
        t0 = time.perf_counter()
        compiled(x)  # the first call compiles
        synchronize(dev)
        row.compile_s = time.perf_counter() - t0
        return _eager(compiled, x)
    if dev.type != "cpu" or x.dtype != torch.float32:
        raise RuntimeError("the onnxruntime backend is measured on the CPU in float32 only")
    return _onnxruntime(model, x, workdir, threads)


def _interleaved(
    ready: dict[str, Callable[[], Any]], rows: dict[str, BenchRow], runs: int, dev: torch.device,
    dtype: torch.dtype, progress: bool, desc: str,
) -> tuple[dict[str, float], float]:  # fmt: skip
    """Median seconds per backend and the matmul peak (GFLOP/s), timed round-robin: each round runs
    every backend once and one matrix product, so that a change of the machine's load (it is shared)
    weighs on all of them alike and their ratios hold."""
    times: dict[str, list[float]] = {b: [] for b in ready}
    product = _matmul(dev, dtype)
    product()
    peaks: list[float] = []
    for _ in tqdm(range(runs), desc=desc, disable=not progress, leave=False):
        for backend in list(ready):
            try:
                t0 = time.perf_counter()
                ready[backend]()
                synchronize(dev)
                times[backend].append(time.perf_counter() - t0)
            except Exception as err:
                rows[backend].error = _describe(err)
                del ready[backend], times[backend]
        t0 = time.perf_counter()
        product()
        synchronize(dev)
        peaks.append(MATMUL_FLOPS / (time.perf_counter() - t0) / 1e9)
    return {b: statistics.median(t) for b, t in times.items()}, statistics.median(peaks)


def format_rows(rows: Sequence[BenchRow]) -> str:
    """A table of the rows, with the speed-up of each backend over eager at the same batch."""
    eager = {r.batch: r.ms_per_image for r in rows if r.backend == "eager" and r.ms_per_image}
    w = max([14, *(len(r.model) + 2 for r in rows)])  # the model column fits the longest name
    lines = [
        f"{'model':<{w}s}{'backend':<13s}{'batch':>6s}{'img':>6s}{'ms/img':>10s}{'img/s':>9s}"
        f"{'GFLOP/s':>9s}{'peak':>7s}{'vs eager':>10s}  notes"
    ]
    for r in rows:
        if r.error:
            lines.append(f"{r.model:<{w}s}{r.backend:<13s}{r.batch:>6d}{r.img:>6d}{'-':>10s}{'-':>9s}"
                         f"{'-':>9s}{'-':>7s}{'-':>10s}  failed: {r.error}")  # fmt: skip
            continue
        speedup = eager.get(r.batch)
        ratio = f"{speedup / r.ms_per_image:.2f}x" if speedup else "-"
        note = f"compile {r.compile_s:.1f} s" if r.compile_s is not None else ""
        lines.append(
            f"{r.model:<{w}s}{r.backend:<13s}{r.batch:>6d}{r.img:>6d}{r.ms_per_image:>10.1f}"
            f"{r.images_per_s:>9.2f}{r.gflops_per_s:>9.1f}{r.peak_fraction:>7.1%}{ratio:>10s}  {note}"
        )
    if rows:
        r = rows[0]
        lines.append(
            f"{r.gflops_per_image:.2f} GFLOPs per image (fused deploy graph); matmul peak "
            f"{r.peak_gflops_per_s:.1f} GFLOP/s ({r.dtype}, {r.device}, {r.threads} threads); "
            f"median of {r.runs} interleaved runs after {r.warmup} warm-up; load average {r.load_avg}; "
            f"OMP_WAIT_POLICY {r.omp_wait_policy}"
        )
        cpus = os.cpu_count() or 1
        if r.load_avg and r.load_avg[0] > cpus and r.omp_wait_policy.upper() != "PASSIVE" and r.threads > 1:
            lines.append(
                f"note: the machine is busy (load {r.load_avg[0]} on {cpus} CPUs); PyTorch's OpenMP threads "
                "spin-wait at every layer and lose their turn, which can slow eager PyTorch several-fold. "
                "OMP_WAIT_POLICY=PASSIVE (set before starting) or --threads 1 makes it robust to sharing."
            )
    return "\n".join(lines)
