"""CPU latency of a model before and after re-parameterization (paper Sections 4.1 and 4.3).

Three graphs of the same function, timed side by side in one run (rounds interleave the graphs, so
machine load hits them alike), batch 1, float32, eval mode, median over the rounds:

- training graph: BatchNorms, RepConv branches, implicit knowledge (and auxiliary head, if any);
- deploy graph, unfused: implicit folded, auxiliary head dropped, BatchNorms and RepConvs kept;
- deploy graph, fused: what ``reparameterize`` returns.

    PYTHONPATH=. python benchmarks/bench_reparam.py --model yolov7 --img 640 --runs 10
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from tqdm import tqdm

from yolov7lib.models import create_model, reparameterize
from yolov7lib.models.info import count_params, model_flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="yolov7")
    parser.add_argument("--img", type=int, default=640)
    parser.add_argument("--runs", type=int, default=10, help="timed rounds (each times every graph once)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    training = create_model(args.model).eval()
    graphs = {
        "training graph": training,
        "deploy graph, unfused": reparameterize(training, fuse=False),
        "deploy graph, fused": reparameterize(training),
    }
    x = torch.rand(1, 3, args.img, args.img)
    times: dict[str, list[float]] = {name: [] for name in graphs}
    with torch.inference_mode():
        for _ in range(args.warmup):
            for model in graphs.values():
                model(x)
        for _ in tqdm(range(args.runs), desc=f"{args.model} {args.img}px", unit="round"):
            for name, model in graphs.items():
                start = time.perf_counter()
                model(x)
                times[name].append(time.perf_counter() - start)

    threads = torch.get_num_threads()
    print(f"{args.model}, input 1x3x{args.img}x{args.img}, float32, {threads} threads, {args.runs} rounds")
    reference = statistics.median(times["training graph"])
    print(
        f"{'graph':24s} {'params':>12s} {'GFLOPs':>8s} {'median ms':>10s} {'min ms':>8s} {'vs training':>12s}"
    )
    for name, model in graphs.items():
        median = statistics.median(times[name])
        gflops = model_flops(model, args.img) / 1e9
        print(
            f"{name:24s} {count_params(model):>12,} {gflops:>8.1f} {median * 1e3:>10.1f} "
            f"{min(times[name]) * 1e3:>8.1f} {median / reference:>11.2f}x"
        )


if __name__ == "__main__":
    main()
