"""Run under torchrun (2 processes): rank 1 waits at two barriers for rank 0, which is late by less, then by
more, than the process group timeout given to init_distributed; rank 1 writes what each wait gave."""

import json
import sys
import time

import torch.distributed as dist

from yolov7lib.engine.distributed import cleanup_distributed, init_distributed

out, timeout_s = sys.argv[1], float(sys.argv[2])
ctx = init_distributed("cpu", timeout_minutes=timeout_s / 60)
waits = []
for late in (timeout_s / 3, timeout_s * 3):
    if ctx.rank == 0:
        time.sleep(late)
        if late < timeout_s:
            dist.barrier()
        continue
    start = time.monotonic()
    try:
        dist.barrier()
        outcome = "passed"
    except RuntimeError as err:
        outcome = f"gave up: {err}"
    waits.append({"late_s": late, "waited_s": time.monotonic() - start, "outcome": outcome})
if ctx.rank == 1:
    with open(out, "w") as f:
        json.dump(waits, f)
cleanup_distributed()
