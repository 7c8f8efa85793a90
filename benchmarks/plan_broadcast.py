"""Cost of broadcasting one step's `StepPlan` from rank 0 to the other ranks (the tensor-
parallel control channel on a gloo group: ``RankGroup.send``, one fixed-size broadcast, beside
``broadcast_object_list``, which takes two), per step, for decode
batches of 1 and 64 requests and a 64-request prefill. Two local CPU processes.

    python benchmarks/plan_broadcast.py [--world 2] [--iters 300]
"""

from __future__ import annotations

import argparse
import pickle
import time
from datetime import timedelta

import torch.distributed as dist
import torch.multiprocessing as mp
from anyware.distributed import Placement, RankGroup
from anyware.distributed.placement import free_port
from anyware.executor.plan import StepPlan


def plans() -> dict[str, StepPlan]:
    def decode(n: int) -> StepPlan:
        return StepPlan("decode", [1000 + i for i in range(n)], [900 + i for i in range(n)],
                        [1] * n, [1] * n, [50_000 + 17 * i for i in range(n)], list(range(n)),
                        60, [(i, 57, 3000 + i) for i in range(n // 16)], 0, list(range(n)))

    prefill = StepPlan("extend", list(range(64 * 128)), [0] * 64, [128] * 64, [1] * 64,
                       list(range(64 * 128)), list(range(64)), 8,
                       [(r, c, r * 8 + c) for r in range(64) for c in range(8)], 0,
                       list(range(64)))
    return {"decode x1": decode(1), "decode x64": decode(64), "prefill 64x128": prefill}


def _timed(fn, iters: int) -> float:
    for _ in range(20):  # warm-up
        fn()
    dist.barrier()
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    dist.barrier()
    return (time.perf_counter() - t) / iters * 1e6


def run(rank: int, world: int, addr: str, iters: int) -> None:
    dist.init_process_group("gloo", init_method=addr, rank=rank, world_size=world,
                            timeout=timedelta(seconds=60))
    group = RankGroup(Placement(rank, world, rank, addr), "gloo", 60.0)  # control = default

    for name, plan in plans().items():
        def object_list(plan=plan):
            dist.broadcast_object_list([plan if rank == 0 else None], src=0)

        def rank_group(plan=plan):
            if rank == 0:
                group.send(plan)
            else:
                assert group.recv() == plan

        us_obj, us_grp = _timed(object_list, iters), _timed(rank_group, iters)
        if rank == 0:
            size = len(pickle.dumps(plan))
            print(f"{name:16s} {size:8d} B pickled  broadcast_object_list {us_obj:8.1f} us/step"
                  f"  RankGroup.send {us_grp:8.1f} us/step")
    dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--world", type=int, default=2)
    ap.add_argument("--iters", type=int, default=300)
    a = ap.parse_args()
    addr = f"tcp://127.0.0.1:{free_port()}"
    mp.spawn(run, args=(a.world, addr, a.iters), nprocs=a.world)


if __name__ == "__main__":
    main()
