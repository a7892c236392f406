"""`yolov7 bench`: the JSON rows' schema and internal consistency (no timing assertions), failure rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from inference_models import SMALL_CFG

from yolov7lib.cli import main
from yolov7lib.engine import bench
from yolov7lib.models import create_model, model_info, reparameterize

KEYS = {"model", "backend", "batch", "img", "ms_per_image", "images_per_s", "gflops_per_s", "peak_fraction"}


@pytest.fixture(scope="module")
def cfg_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "small.yaml"
    path.write_text(yaml.safe_dump(SMALL_CFG))
    return path


def test_bench_json_rows_are_consistent(cfg_file: Path, capsys) -> None:
    code = main(["bench", "--model", str(cfg_file), "--img", "64", "--batch", "1", "2", "--backend",
                 "eager,onnxruntime", "--runs", "3", "--warmup", "1", "--json"])  # fmt: skip
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["backend"], r["batch"]) for r in rows] == [
        ("eager", 1), ("onnxruntime", 1), ("eager", 2), ("onnxruntime", 2)
    ]  # fmt: skip
    gflops = model_info(reparameterize(create_model(SMALL_CFG)), 64).gflops
    for r in rows:
        assert KEYS <= set(r) and r["error"] is None and r["model"] == "small" and r["img"] == 64
        assert r["ms_per_image"] * r["images_per_s"] == pytest.approx(1000.0, rel=1e-9)
        assert r["ms_per_batch"] == pytest.approx(r["ms_per_image"] * r["batch"])
        assert r["gflops_per_image"] == pytest.approx(gflops)
        assert r["gflops_per_s"] == pytest.approx(gflops * r["images_per_s"])
        assert r["peak_fraction"] == pytest.approx(r["gflops_per_s"] / r["peak_gflops_per_s"])
    # one peak per batch, measured in the same rounds as the backends
    assert rows[0]["peak_gflops_per_s"] == rows[1]["peak_gflops_per_s"] > 0


def test_a_failing_backend_is_reported_in_its_row(cfg_file: Path, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    rows = bench.run_bench(str(cfg_file), img=64, batches=(1,), backends=("compile", "eager"), runs=2,
                           warmup=1, progress=False)  # fmt: skip
    assert [r.backend for r in rows] == ["compile", "eager"]
    assert rows[0].error == "RuntimeError: no C++ compiler here" and rows[0].ms_per_image is None
    assert rows[1].error is None and rows[1].ms_per_image > 0
    assert "failed: RuntimeError" in bench.format_rows(rows)
    with pytest.raises(ValueError, match="unknown backend"):
        bench.run_bench(str(cfg_file), img=64, backends=("tensorrt",))


def test_threads_apply_to_the_measurements_only(cfg_file: Path) -> None:
    """Before: run_bench(threads=n) left torch.set_num_threads(n) set for the rest of the caller's process."""
    before = torch.get_num_threads()
    wanted = 2 if before != 2 else 1
    try:
        rows = bench.run_bench(str(cfg_file), img=64, batches=(1,), backends=("eager",), runs=1, warmup=0,
                               threads=wanted, progress=False)  # fmt: skip
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    assert rows[0].threads == wanted and rows[0].error is None
    assert after == before


def test_matmul_peak_counts_two_n_cubed_flops(monkeypatch) -> None:
    monkeypatch.setattr(bench, "_median_seconds", lambda fn, runs, warmup, device: 0.5)
    assert bench.matmul_peak("cpu", n=256) == pytest.approx(2 * 256**3 / 0.5 / 1e9)


def test_describe_device_names_the_gpu_that_the_measurement_runs_on(monkeypatch) -> None:
    """describe_device follows select_device: '1' is GPU 1 and '' the first GPU when CUDA is there (before:
    GPU 0's name for any index, and '' described the CPU while the measurement ran on GPU 0). CUDA is
    faked: two GPUs of different names."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(
        torch.cuda, "get_device_name", lambda device=None: f"gpu {torch.device(device).index}"
    )
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert [bench.describe_device(d) for d in ("0", "1", "cuda:1", "")] == [
        "gpu 0",
        "gpu 1",
        "gpu 1",
        "gpu 0",
    ]
    assert "CPU" in bench.describe_device("cpu")
