"""benchmarks/bench_loss.py --parts: the pieces it times are the loss's own work.

The script times the objectness term of every cell apart from the rest of each form's step. The oracle's
piece is the oracle's own function; the batched piece is written out in the script, so a test checks
that it computes the loss's term, and the budget line's arithmetic is checked on made-up times.
"""

from __future__ import annotations

import pytest
import torch
from benchmark_scripts import load_script
from test_assign_oracle import FakeHead, random_maps

from yolov7lib.configs import load_hyp
from yolov7lib.loss import build_loss


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_loss")


@pytest.mark.parametrize("p6", [False, True])
def test_objectness_term_is_the_loss_term(bench, p6: bool) -> None:
    """With no targets every level's objectness loss is the dense term alone: the timed piece must give it."""
    gen = torch.Generator().manual_seed(3)
    head = FakeHead(p6=p6, nc=80)
    maps = [m.float() for m in random_maps(head, 2, 256, gen, aux=p6, scale=3.0)]
    loss_fn = build_loss(head, load_hyp("p6" if p6 else "tiny"), img_size=256)
    no_targets = torch.zeros(0, 6)
    heads, _ = loss_fn.labelled_heads(maps, no_targets)
    terms = loss_fn.heads_terms(heads, no_targets)
    want = torch.cat([t.obj for t in terms])
    cells = torch.tensor([m[..., 4].numel() for m in maps], dtype=torch.float32)
    torch.testing.assert_close(bench.objectness_term(maps) / cells, want, rtol=1e-6, atol=0)


def test_objectness_read_reads_the_objectness_column(bench) -> None:
    """The timed read must touch the objectness logit (column 4) of every cell of every map, no other."""
    gen = torch.Generator().manual_seed(4)
    head = FakeHead(p6=True, nc=80)
    maps = [m.double() for m in random_maps(head, 2, 128, gen, aux=True, scale=3.0)]
    want = sum(m[..., 4].sum() for m in maps)
    torch.testing.assert_close(bench.objectness_read(maps), want, rtol=1e-12, atol=0)
    assert not torch.isclose(bench.objectness_read([m[..., 1:] for m in maps]), want)


def test_print_parts_budget(bench, capsys: pytest.CaptureFixture[str]) -> None:
    """The 10x budget is the oracle's median / 10; what it leaves is that minus the objectness term."""
    ms = 1e-3
    times = {
        "batched": [5 * ms, 6 * ms, 7 * ms],
        "oracle": [40 * ms, 42 * ms, 90 * ms],
        "assignment": [3 * ms] * 3,
        "terms": [2 * ms] * 3,
        "objectness": [1.5 * ms] * 3,
        "oracle assignment": [36 * ms] * 3,
        "oracle terms": [5 * ms] * 3,
        "oracle objectness": [2 * ms] * 3,
        "objectness read": [1.2 * ms] * 3,
    }
    bench.print_parts(times)
    out = capsys.readouterr().out
    assert "whole step (run again beside the pieces)       6.0     42.0" in out
    assert "assignment (candidates + matching)            3.0     36.0" in out
    assert "at <= 4.2 ms" in out and "leaving 2.7 ms" in out and "(now 4.5 ms)" in out
    assert "cache line): 1.2 ms of the objectness term's 1.5" in out
