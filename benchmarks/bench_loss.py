"""Time one loss step (label assignment + loss) batched vs the per-image oracle of the tests.

    PYTHONPATH=$PWD python benchmarks/bench_loss.py [--repeats 15] [--threads 1] [--real-models] [--batch N]
                                                   [--parts]

The two settings of issue 5: yolov7-tiny at 320 px, batch 16, 8 objects per image (lead head only,
SimOTA with top-10) and yolov7-w6 at 640 px, batch 4, 8 objects per image (lead + auxiliary head,
coarse-to-fine lead-guided labels, top-20); and a crowded one closer to COCO mosaic batches, yolov7-tiny
at 640 px, batch 16, 32 objects per image. Predictions are random maps of the heads' shapes, or with
--real-models the training-mode outputs of `yolov7lib.create_model` on random images.
The oracle (tests/test_assign_oracle.py) assigns image by image and target by target as the reference
implementation does, with the loss terms vectorised per level. Both run in float32 in the same process,
on the same inputs, in turn (batched, batched + backward, oracle; repeated), so that load changes on a
shared machine hit all alike; the script prints median and minimum wall and thread-CPU times, the
ratios, the largest relative difference of the loss items between the two, and the thread count and
load average (thread-CPU time is the steadier measure when other jobs share the cores).
The batched times cover the whole training-step loss: input checks, both assignments, all loss terms.
`--batch N` replaces the settings' batch sizes, to see how the ratio changes with the batch: the
oracle's loop runs once per image, while the batched form's cost per image is mostly the objectness
term over every cell, which both pay.
`--parts` also times the pieces of each form on the same inputs: the assignment, the loss terms given
the labels, and within those the objectness of every cell against 0 (the one part that reads every cell
of every map: memory-bound, and paid by both forms), and within that the reading of the objectness
logits alone, without arithmetic: each logit sits in its own cache line of the (B, na, H, W, no) maps,
so on maps larger than the cache this read costs about the same in any implementation. It prints what a
10x ratio would leave for the rest of the batched step.
The header names the vector kernels ATen chose for this CPU: they set the elementwise costs. With
torch 2.14.1 on the AVX-512 AMD EPYC of README, for example, log1p (and so softplus, which the
objectness term runs on every cell) takes about 9 ns per element with the AVX512 kernels and 2 with
AVX2 (`ATEN_CPU_CAPABILITY=avx2`); run the script under both to see how much of a ratio is the machine's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_assign_oracle import (
    FakeHead,
    OracleConfig,
    OracleLabels,
    oracle_assign,
    oracle_config,
    oracle_head_terms,
    oracle_loss,
)

from yolov7lib.configs import load_hyp
from yolov7lib.loss import YOLOv7Loss, build_loss
from yolov7lib.loss.maps import read_maps

SETTINGS = {
    # name: (P6 head with auxiliary maps, image size, batch, objects per image, hyp profile, model name)
    "yolov7-tiny": (False, 320, 16, 8, "tiny", "yolov7-tiny"),
    "yolov7-w6": (True, 640, 4, 8, "p6", "yolov7-w6"),
    # Not in the issue: closer to COCO mosaic batches, where crowded images make per-image work grow.
    "yolov7-tiny-crowded": (False, 640, 16, 32, "tiny", "yolov7-tiny"),
}


def random_targets(batch: int, per_image: int, gen: torch.Generator) -> torch.Tensor:
    n = batch * per_image
    image = torch.arange(batch).repeat_interleave(per_image)[:, None].float()
    cls = torch.randint(0, 80, (n, 1), generator=gen).float()
    xy = torch.rand(n, 2, generator=gen) * 0.8 + 0.1
    wh = torch.rand(n, 2, generator=gen) ** 2 * 0.4 + 0.02
    return torch.cat((image, cls, xy, wh), 1)


def predictions(aux: bool, img: int, batch: int, model_name: str, real: bool, gen: torch.Generator):
    """(head, maps, source) with maps of the head's training-mode shapes."""
    if real:
        try:
            from yolov7lib import create_model  # type: ignore[attr-defined]
        except ImportError:
            print("  yolov7lib.create_model is not available yet; using random maps")
        else:
            model = create_model(model_name).train()
            with torch.no_grad():
                maps = model(torch.rand(batch, 3, img, img, generator=gen))
            return model.head, [m.float() for m in maps], f"{model_name} forward pass"
    head = FakeHead(p6=aux, nc=80)
    maps = [
        torch.randn(batch, head.na, img // int(s), img // int(s), head.no, generator=gen) for s in head.stride
    ]
    if aux:
        maps += [torch.randn(m.shape, generator=gen) for m in maps]
    return head, maps, "random maps"


def interleaved_times(
    fns: dict[str, Callable[[], object]], repeats: int, clock: Callable[[], float]
) -> dict[str, list[float]]:
    """Run the functions in turn `repeats` times (after a warm-up) so that load changes hit all alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = clock()
            fn()
            times[k].append(clock() - t0)
    return times


def objectness_logits(maps: list[torch.Tensor]) -> torch.Tensor:
    """The objectness logits of every cell of `maps`, flattened map after map, read as the loss reads them."""
    logits, _ = read_maps(maps, [torch.empty(0, dtype=torch.long)] * len(maps))
    return logits


def objectness_term(maps: list[torch.Tensor]) -> torch.Tensor:
    """Per map, the batched loss's objectness BCE of every cell against 0, summed, read as the loss reads
    it: the part of its step that touches every cell. Plain BCE (softplus), as the settings' hyps have it
    (no focal loss); the tests check it against the loss's own term."""
    logits = objectness_logits(maps)
    return torch.stack([d.sum() for d in F.softplus(logits).split([m[..., 4].numel() for m in maps])])


def objectness_read(maps: list[torch.Tensor]) -> torch.Tensor:
    """`objectness_logits`, summed (the sum runs over a contiguous vector: a small part of the time).
    What the objectness term costs before any arithmetic."""
    return objectness_logits(maps).sum()


def oracle_objectness_term(cfg: OracleConfig, head: Any, maps: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per map, the oracle's objectness loss with no positives: its target map and BCE over every cell."""
    no_labels = OracleLabels(levels=[[] for _ in maps])
    return [obj for _, obj, _, _ in oracle_head_terms(cfg, head, maps, no_labels, torch.zeros(0, 6), True)]


def part_functions(
    loss_fn: YOLOv7Loss,
    cfg: OracleConfig,
    head: Any,
    maps: list[torch.Tensor],
    targets: torch.Tensor,
    imgs: torch.Tensor,
) -> dict[str, Callable[[], object]]:
    """The pieces of one loss step of both forms, each a no-argument function over the same inputs."""
    nl, img_hw = int(head.nl), (int(imgs.shape[-2]), int(imgs.shape[-1]))
    heads, _ = loss_fn.labelled_heads(maps, targets, imgs)
    o_lead, o_aux = oracle_assign(cfg, head, maps, targets, img_hw)

    def oracle_terms() -> None:
        oracle_head_terms(cfg, head, maps[:nl], o_lead, targets, True)
        if o_aux is not None:
            oracle_head_terms(cfg, head, maps[nl:], o_aux, targets, cfg.aux_constrained)

    return {
        "assignment": lambda: loss_fn.assign(maps, targets, imgs),
        "terms": lambda: loss_fn.heads_terms(heads, targets),
        "objectness": lambda: objectness_term(maps),
        "objectness read": lambda: objectness_read(maps),
        "oracle assignment": lambda: oracle_assign(cfg, head, maps, targets, img_hw),
        "oracle terms": oracle_terms,
        "oracle objectness": lambda: oracle_objectness_term(cfg, head, maps),
    }


def print_parts(times: dict[str, list[float]]) -> None:
    """Median wall times of the whole steps and their pieces beside each other, and what a 10x ratio
    would leave for the batched step's work besides the objectness term."""
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    batched, oracle = med["batched"], med["oracle"]
    print("  where the time goes (wall ms, median)        batched   oracle")
    for label, ours, theirs in (
        ("whole step (run again beside the pieces)", "batched", "oracle"),
        ("assignment (candidates + matching)     ", "assignment", "oracle assignment"),
        ("loss terms given the labels            ", "terms", "oracle terms"),
        ("  of which objectness of every cell    ", "objectness", "oracle objectness"),
    ):
        print(f"  {label} {med[ours]:9.1f} {med[theirs]:8.1f}")
    budget = oracle / 10
    print(
        f"  10x needs the batched step at <= {budget:.1f} ms; its objectness term alone takes "
        f"{med['objectness']:.1f} ms, leaving {budget - med['objectness']:.1f} ms for everything else "
        f"(now {batched - med['objectness']:.1f} ms)"
    )
    print(
        f"  reading the objectness logits alone (no arithmetic; every cell in its own cache line): "
        f"{med['objectness read']:.1f} ms of the objectness term's {med['objectness']:.1f}"
    )


def bench(name: str, repeats: int, real: bool, batch_size: int | None = None, parts: bool = False) -> None:
    aux, img, batch, per_image, profile, model_name = SETTINGS[name]
    batch = batch_size or batch
    gen = torch.Generator().manual_seed(0)
    head, maps, source = predictions(aux, img, batch, model_name, real, gen)
    targets = random_targets(batch, per_image, gen)
    imgs = torch.zeros(batch, 3, img, img)
    hyp = load_hyp(profile)
    loss_fn = build_loss(head, hyp, img_size=img)
    cfg = oracle_config(hyp, head.nl, head.nc, img, aux)

    def batched() -> torch.Tensor:
        with torch.no_grad():
            return loss_fn(maps, targets, imgs)[1]

    def batched_backward() -> None:
        leaves = [m.detach().requires_grad_() for m in maps]
        loss_fn(leaves, targets, imgs)[0].backward()

    def oracle() -> torch.Tensor:
        with torch.no_grad():
            return oracle_loss(cfg, head, maps, targets, (img, img))[1]

    diff = ((batched() - oracle().to(torch.float32)).abs() / oracle().abs()).max().item()
    fns = {"batched": batched, "backward": batched_backward, "oracle": oracle}
    print(f"{name}: {img} px, batch {batch}, {per_image} objects/image, {len(maps)} maps ({source})")
    print(f"  load average before: {_load()}")
    # Wall time, and this thread's CPU time, which other processes on a shared machine disturb less.
    for clock_name, clock in (("wall", time.perf_counter), ("cpu", time.thread_time)):
        t = interleaved_times(fns, repeats, clock)
        ratios = [o / b for o, b in zip(t["oracle"], t["batched"], strict=True)]
        print(f"  {clock_name} milliseconds                          median      min")
        for key, label in (
            ("batched", "batched  assignment + loss           "),
            ("backward", "batched  assignment + loss + backward"),
            ("oracle", "oracle   assignment + loss (per image)"),
        ):
            print(f"  {label} {statistics.median(t[key]) * 1e3:9.1f} {min(t[key]) * 1e3:8.1f}")
        print(
            f"  oracle / batched ({clock_name}): median of paired ratios {statistics.median(ratios):.1f}x, "
            f"ratio of minima {min(t['oracle']) / min(t['batched']):.1f}x"
        )
    print(f"  largest relative difference of the loss items: {diff:.1e}")
    if parts:
        with torch.no_grad():  # the whole steps again, in the same run as their pieces
            pieces = part_functions(loss_fn, cfg, head, maps, targets, imgs)
            print_parts(
                interleaved_times(
                    {"batched": batched, "oracle": oracle, **pieces}, repeats, time.perf_counter
                )
            )
    print(f"  load average after: {_load()}")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" (1, 5, 15 min; {os.cpu_count()} CPUs)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: steadier)")
    parser.add_argument("--real-models", action="store_true", help="use create_model outputs if available")
    parser.add_argument("--only", choices=list(SETTINGS), help="run one setting")
    parser.add_argument("--batch", type=int, help="batch size for every setting (default: the setting's)")
    parser.add_argument("--parts", action="store_true", help="also time the pieces of each form")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    kernels = torch.backends.cpu.get_cpu_capability()  # ATEN_CPU_CAPABILITY can lower it
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, {kernels} kernels")
    for name in [args.only] if args.only else SETTINGS:
        bench(name, args.repeats, args.real_models, args.batch, args.parts)


if __name__ == "__main__":
    main()
