"""One rank of test_comm.py: the JAX communicator's uneven all_to_all, all_gather along dim 1
and broadcast from rank 1, checked against torch on this rank; exits 0 when all match."""

import sys

import torch
from anyware.runtime import load_platform


def main() -> int:
    rank, world = int(sys.argv[1]), int(sys.argv[2])
    platform = load_platform("tpu")
    platform.init_device(rank=rank, local_rank=rank)
    comm = platform.communicator(rank, world)
    rows = [[r * world + j + 1 for j in range(world)] for r in range(world)]  # rank r -> j
    xs = [torch.arange(sum(rows[r]) * 3, dtype=torch.float32).reshape(-1, 3) + 100 * r
          for r in range(world)]
    got = comm.all_to_all(xs[rank], input_split_sizes=rows[rank])
    want = torch.cat([xs[r].split(rows[r])[rank] for r in range(world)])
    assert torch.equal(got, want), (got, want)
    g = comm.all_gather(xs[rank][:2], dim=1)
    assert torch.equal(g, torch.cat([x[:2] for x in xs], dim=1))
    b = xs[rank][:3].clone()
    assert comm.broadcast(b, src=1) is b and torch.equal(b, xs[1][:3])
    assert platform.device_count() == 4  # the virtual devices of this process
    comm.barrier()
    print("ok", rank, comm.calls)
    return 0


if __name__ == "__main__":
    sys.exit(main())
