"""Compile the ROCm plugin's Triton kernels ahead of time for MI300 (gfx942) on the CPU.

Run as a script (``python -m tests.platforms.rocm_aot``), never under ``TRITON_INTERPRET``.
A fake HIP driver whose target is ``GPUTarget("hip", "gfx942", 64)`` is made active and every
``JITFunction.run`` is turned into a warm-up (compile, never launch); then the plugin's own
code paths run on CPU tensors: the portable ops (RMSNorm, fused add-RMSNorm, rotary,
SiLU-and-mul, KV store) and the portable attention backend on decode (the splits merged in
the split launch, and by the reduce launch), extend and mixed batches. Each kernel that compiled is printed with the size of its HSA code object; the exit
status is non-zero if a kernel failed to compile or none did.
"""

from __future__ import annotations

import os
import sys

os.environ.pop("TRITON_INTERPRET", None)

import torch
from triton.runtime import driver
from triton.runtime.jit import JITFunction


def main() -> int:
    from tests.platforms.aiter_harness import FakeHipDriver

    driver.set_active(FakeHipDriver())
    compiled: dict[str, int] = {}
    original = JITFunction.run

    def warmup_only(self, *args, grid, warmup, **kwargs):
        kernel = original(self, *args, grid=grid, warmup=True, **kwargs)
        meta = kernel.metadata.target
        assert (meta.backend, meta.arch) == ("hip", "gfx942"), meta
        hsaco = kernel.asm.get("hsaco", b"")
        assert len(hsaco) > 0, f"{self.fn.__name__}: no code object"
        compiled[self.fn.__name__] = len(hsaco)
        return kernel

    JITFunction.run = warmup_only

    from anyware.kernels.triton.ops import TritonOps
    from anyware.plugin import AttentionLayer, ForwardMode
    from anyware.runtime import PlatformDriver
    from anyware_conformance.paged import build, spec_for
    from anyware_rocm.platform import RocmPlatform
    from anyware_rocm.probe import RocmEnvironment

    dt = torch.bfloat16
    ops = TritonOps()
    x, r, w = torch.randn(4, 128, dtype=dt), torch.randn(4, 128, dtype=dt), torch.randn(128, dtype=dt)
    ops.rms_norm(x, w, 1e-6)
    ops.fused_add_rms_norm(x, r, w, 1e-6)
    ops.silu_and_mul(torch.randn(4, 256, dtype=dt))
    q, k = torch.randn(4, 4, 64, dtype=dt), torch.randn(4, 2, 64, dtype=dt)
    cos_sin = torch.randn(64, 64)
    ops.rotary(q, k, torch.arange(4), cos_sin, True)
    ops.rotary(q, k, torch.arange(4), cos_sin, False)

    platform = RocmPlatform()
    platform.env = RocmEnvironment(None, "portable path", False, 1)
    platform.device = torch.device("cpu")
    platform = PlatformDriver(platform)
    gen = torch.Generator().manual_seed(0)
    layer = AttentionLayer(0, 4, 2, 64, 64, 0.125)
    # decode twice: splits merged in the split launch (the default) and by the reduce launch
    for mode, prefix, extend, merge in ((ForwardMode.DECODE, [17, 40], [1, 1], True),
                                        (ForwardMode.DECODE, [17, 40], [1, 1], False),
                                        (ForwardMode.EXTEND, [0, 20], [9, 5], True),
                                        (ForwardMode.MIXED, [12, 33], [6, 1], True)):
        backend = platform.attention_backend(spec_for(4, 2, 64, "bfloat16", 4, 256))
        backend.decode_fused_reduce = merge
        sc = build(platform, backend, gen, dtype="bfloat16", page_size=16, num_heads=4,
                   num_kv_heads=2, head_dim=64, prefix_lens=prefix, extend_lens=extend,
                   mode=mode, scale=0.125)
        backend.prepare(sc.batch)
        backend.update(sc.batch)
        backend.forward(sc.q, sc.k, sc.v, layer, sc.cache, sc.batch)
    for name, size in sorted(compiled.items()):
        print(f"gfx942 {name}: {size} bytes")
    return 0 if compiled else 1


if __name__ == "__main__":
    sys.exit(main())
