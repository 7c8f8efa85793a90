"""One rank of the multi-rank collectives stage: ``python -m anyware_conformance.collective_worker``.

Each rank loads the platform by name, initialises its device and the default process group
through the standard env rendezvous (MASTER_ADDR/MASTER_PORT/RANK/WORLD_SIZE, as torchrun
does) with the platform's ``dist_backend``, runs every requested collective on inputs every
rank can regenerate (seeded by rank), compares with the fp64 result it computes itself, and
writes one JSON file of records.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback

import torch

SHAPE = (6, 40)  # rows of all_reduce/all_gather/broadcast inputs


def rank_input(seed: int, op: str, dtype: torch.dtype, rank: int, world: int) -> torch.Tensor:
    g = torch.Generator()
    g.manual_seed(seed * 7919 + rank * 104729 + sum(map(ord, op)) + world)
    rows = 4 * world if op in ("reduce_scatter", "all_to_all") else SHAPE[0]
    return torch.randn((rows, SHAPE[1]), generator=g).to(dtype)


def uneven_splits(rank: int, world: int) -> list[int]:
    """Rows rank ``rank`` sends to each rank in the uneven all-to-all (0 to 3, zeros included:
    expert-parallel dispatch sends no rows to ranks whose experts got no token)."""
    return [(rank + j) % 4 for j in range(world)]


def _uneven_expected(xs: list[torch.Tensor], rank: int, world: int) -> torch.Tensor:
    parts = []
    for i, x in enumerate(xs):
        sizes = uneven_splits(i, world)
        start = sum(sizes[:rank])
        parts.append(x[start : start + sizes[rank]])
    return torch.cat(parts, dim=0)


def expected(op: str, inputs: list[torch.Tensor], rank: int, world: int) -> torch.Tensor | None:
    xs = [x.double() for x in inputs]
    if op == "all_reduce":
        return sum(xs)
    if op == "all_gather":
        return torch.cat(xs, dim=0)
    if op == "reduce_scatter":
        return sum(xs).chunk(world, dim=0)[rank]
    if op == "all_to_all":  # an equal split, then an uneven one (split sizes given)
        even = torch.cat([x.chunk(world, dim=0)[rank] for x in xs], dim=0)
        return torch.cat([even, _uneven_expected(xs, rank, world)], dim=0)
    if op == "broadcast":
        return xs[0]
    return None


def run(args) -> list[dict]:
    from anyware.runtime import load_platform

    rank, world = args.rank, args.world_size
    platform = load_platform(args.platform)
    device = platform.init_device(rank=rank, local_rank=rank % max(1, platform.device_count()))
    import torch.distributed as dist

    dist.init_process_group(backend=platform.dist_backend, init_method="env://",
                            rank=rank, world_size=world)
    comm = platform.communicator(rank, world)
    records = []
    for dtype_name in args.dtypes.split(","):
        dtype = getattr(torch, dtype_name)
        for op in args.ops.split(","):
            rec = {"op": op, "dtype": dtype_name, "rank": rank}
            try:
                inputs = [rank_input(args.seed, op, dtype, r, world) for r in range(world)]
                x = inputs[rank].to(device)
                before = comm.calls
                if op == "all_reduce":
                    out = comm.all_reduce(x.clone())
                elif op == "all_gather":
                    out = comm.all_gather(x)
                elif op == "reduce_scatter":
                    out = comm.reduce_scatter(x)
                elif op == "all_to_all":
                    send = uneven_splits(rank, world)
                    recv = [uneven_splits(i, world)[rank] for i in range(world)]
                    out = torch.cat([comm.all_to_all(x),
                                     comm.all_to_all(x[: sum(send)], recv, send)], dim=0)
                elif op == "broadcast":
                    out = comm.broadcast(x.clone(), src=0)
                else:
                    comm.barrier()
                    out = None
                platform.synchronize()
                rec["calls_grew"] = comm.calls > before
                want = expected(op, inputs, rank, world)
                if out is not None:
                    rec["device_ok"] = out.device.type == device.type
                    rec["out_device"] = str(out.device)
                    rec["shape_ok"] = tuple(out.shape) == tuple(want.shape)
                    if rec["shape_ok"]:
                        a, e = out.detach().cpu().double(), want
                        d = (a - e).abs()
                        rec.update(max_abs=float(d.max()), mean_abs=float(d.mean()),
                                   rel=float(d.norm() / e.norm().clamp_min(1e-30)),
                                   actual=a.flatten().tolist(), expected=e.flatten().tolist())
                    else:
                        rec["shapes"] = [list(out.shape), list(want.shape)]
            except Exception as exc:
                rec["exception"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-1500:]}"
            records.append(rec)
    comm.barrier()
    dist.destroy_process_group()
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--platform", required=True)
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--world-size", type=int, required=True)
    parser.add_argument("--ops", required=True)
    parser.add_argument("--dtypes", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("LOCAL_RANK", str(args.rank))
    records = run(args)
    with open(args.out, "w") as f:
        json.dump(records, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
