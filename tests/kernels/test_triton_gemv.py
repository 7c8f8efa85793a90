"""The few-rows linear kernel (``anyware.kernels.triton.gemv``) vs ``F.linear`` in float64,
on fresh random inputs: row counts 1-16, ragged N and K, with and without bias, several
launch configurations (CPU: Triton interpreter)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from anyware.kernels.triton.gemv import small_m_linear

from tests.kernels._helpers import TOL, rel_err


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("m, n, k, bias", [(1, 40, 72, False), (3, 16, 32, True),
                                            (16, 50, 100, True), (2, 130, 48, False)])
def test_small_m_linear_matches_reference(device, dtype, m, n, k, bias):
    x = torch.randn(m, k).to(dtype).to(device)
    w = (torch.randn(n, k) * k**-0.5).to(dtype).to(device)
    b = torch.randn(n).to(dtype).to(device) if bias else None
    want = F.linear(x.cpu().double(), w.cpu().double(), b.cpu().double() if bias else None)
    out = small_m_linear(x, w, b)
    assert out.dtype == dtype and out.shape == (m, n)
    assert rel_err(out, want) < TOL[dtype]


@pytest.mark.parametrize("block_n, block_k, warps", [(32, 16, 2), (16, 64, 4)])
def test_small_m_linear_launch_configs_agree(device, block_n, block_k, warps):
    x, w = torch.randn(2, 96, device=device), torch.randn(70, 96, device=device)
    want = F.linear(x.double().cpu(), w.double().cpu())
    out = small_m_linear(x, w, block_n=block_n, block_k=block_k, num_warps=warps, num_stages=1)
    assert rel_err(out, want) < TOL[torch.float32]


def test_small_m_linear_rejects_bad_shapes(device):
    with pytest.raises(ValueError, match="at most 16 rows"):
        small_m_linear(torch.zeros(17, 8, device=device), torch.zeros(4, 8, device=device))
    with pytest.raises(ValueError, match="matching K"):
        small_m_linear(torch.zeros(1, 8, device=device), torch.zeros(4, 6, device=device))
