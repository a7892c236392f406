"""Training loader throughput: images/s per worker count with the p5 hyperparameters, at 320 and 640 px.

    python benchmarks/bench_loader.py                      # generates the sets, workers 0 1 2
    python benchmarks/bench_loader.py --workers 0 2 4 --batches 20 --sizes 640

By default a generated set is written for each size (long side = that size, so decoding costs what it
would) into a temporary folder; `--data DIR` uses an image folder or data.yaml instead. Each
configuration runs one warm-up batch (worker start-up excluded), then `--batches` timed batches. All
figures come from the same run, side by side, with the ratio to the single-process loader.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from yolov7lib.data import create_dataloader, load_data_config, synthesize
from yolov7lib.engine.bench import describe_device


def throughput(
    source: Path | list[Path], size: int, batch: int, workers: int, batches: int
) -> tuple[float, int]:
    """Images per second of the augmented training loader (p5 hyp), and the workers actually used."""
    loader, _ = create_dataloader(
        source, size, batch, 32, hyp="p5", augment=True, shuffle=True, workers=workers, progress=False
    )
    it = iter(loader)
    next(it)  # warm-up: worker start-up and first batch
    n, start = 0, time.perf_counter()
    for _ in range(batches):
        try:
            imgs, *_ = next(it)
        except StopIteration:
            it = iter(loader)
            imgs, *_ = next(it)
        n += imgs.shape[0]
    return n / (time.perf_counter() - start), loader.num_workers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="image folder or data.yaml (default: a generated set per size)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[320, 640])
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--batches", type=int, default=10, help="timed batches per configuration")
    ap.add_argument("--images", type=int, default=160, help="images in each generated set")
    args = ap.parse_args()

    print(f"# {describe_device()}, torch {torch.__version__}")
    print(f"# batch {args.batch}, {args.batches} timed batches, hyp p5 (mosaic 1, mixup 0.15, paste_in 0.15)")
    print(f"{'size':>5} {'workers':>7} {'img/s':>8} {'x vs 0':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            if args.data is None:
                root = Path(tmp) / f"synth{size}"
                synthesize(root, args.images, 0, img_size=size, seed=0, progress=False)
                source: Path | list[Path] = root / "images" / "train"
            elif args.data.suffix in (".yaml", ".yml"):
                source = load_data_config(args.data).splits["train"]
            else:
                source = args.data
            base = None
            for w in args.workers:
                rate, used = throughput(source, size, args.batch, w, args.batches)
                base = base or rate
                note = "" if used == w else f"  (capped to {used})"
                print(f"{size:>5} {w:>7} {rate:>8.1f} {rate / base:>7.2f}{note}", flush=True)


if __name__ == "__main__":
    main()
