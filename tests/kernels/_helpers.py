"""Shared helpers of the kernel tests: random paged caches and error measures."""

from __future__ import annotations

import torch

# fp32 math everywhere: the kernels accumulate in fp32 like the reference
TOL = {torch.float32: 2e-5, torch.float16: 5e-3, torch.bfloat16: 2e-2}


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """``||out - ref|| / ||ref||`` in float64; NaN anywhere fails."""
    assert not torch.isnan(out).any(), "NaN in output (unwritten element?)"
    o, r = out.double(), ref.double().to(out.device)
    return float((o - r).norm() / r.norm().clamp_min(1e-30))


def random_paged_kv(
    seq_lens: list[int], page_size: int, hkv: int, d: int, dtype, device, spare_pages: int = 3
):
    """Caches filled with random data and a page table of shuffled pages (page 0 unused)."""
    bsz = len(seq_lens)
    pages = max(1, max((s + page_size - 1) // page_size for s in seq_lens))
    num_pages = bsz * pages + 1 + spare_pages
    perm = torch.randperm(num_pages - 1)[: bsz * pages] + 1
    page_table = perm.view(bsz, pages).to(torch.int32).to(device)
    k_cache = torch.randn(num_pages * page_size, hkv, d, dtype=dtype, device=device)
    v_cache = torch.randn(num_pages * page_size, hkv, d, dtype=dtype, device=device)
    return k_cache, v_cache, page_table


def new_token_slots(page_table: torch.Tensor, prefix: list[int], ext: list[int], page_size: int):
    """int64 slots of every new token, in request order."""
    pt = page_table.cpu().long()
    slots = []
    for i, (p, e) in enumerate(zip(prefix, ext)):
        for pos in range(p, p + e):
            slots.append(int(pt[i, pos // page_size]) * page_size + pos % page_size)
    return torch.tensor(slots, dtype=torch.int64, device=page_table.device)
