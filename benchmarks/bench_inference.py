"""Table 9's CPU protocol for the issue's note: yolov7-tiny and yolov7 at 640 px, batch 1, every backend.

Prints, per model, ms per image, images/s, GFLOP/s and the fraction of the 2048^2 matmul peak measured
in the same run, the speed-up of each backend over eager PyTorch, and the load average (the machine is
shared: repeat when quiet). Run:

    PYTHONPATH=$PWD python benchmarks/bench_inference.py [--models yolov7-tiny yolov7] [--runs 10]
        [--backends eager,compile,onnxruntime] [--batch 1] [--img 640] [--threads T] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from yolov7lib.engine.bench import format_rows, run_bench


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["yolov7-tiny", "yolov7"])
    parser.add_argument("--backends", default="eager,compile,onnxruntime")
    parser.add_argument("--batch", type=int, nargs="+", default=[1])
    parser.add_argument("--img", type=int, default=640)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch and onnxruntime threads (default: torch's)")
    parser.add_argument("--json", help="also write all rows to this file")
    args = parser.parse_args()
    rows = []
    for name in args.models:
        print(f"load average before {name}: {os.getloadavg()}", flush=True)
        got = run_bench(name, None, args.img, args.batch, args.backends.split(","), runs=args.runs,
                        warmup=args.warmup, threads=args.threads)  # fmt: skip
        print(format_rows(got), flush=True)
        rows += [r.as_dict() for r in got]
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
