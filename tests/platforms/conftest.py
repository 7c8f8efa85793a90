"""Vendor platform tests: CPU only, faked vendor environments.

``TRITON_INTERPRET`` must be set before any ``@triton.jit`` function is defined (aiter's and
the portable kernels), so it is set at collection time, as in ``tests/kernels``.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1234)
