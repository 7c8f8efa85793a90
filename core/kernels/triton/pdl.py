"""Programmatic dependent launch (PDL) for the portable Triton kernels.

With PDL (NVIDIA Hopper and later: compute capability 9.0+) a kernel launched with the
programmatic-serialisation attribute may be scheduled while its predecessor on the stream is
still running, so its launch and ramp-up overlap the predecessor's tail instead of following
it. Correctness rests on one rule, which every kernel here follows: a kernel launched with
PDL executes :func:`gdc_enter` **before its first load or store**. ``griddepcontrol.wait``
returns once every earlier kernel on the stream has completed and its writes are visible;
then ``griddepcontrol.launch_dependents`` lets the next PDL kernel be scheduled (it waits in
turn). Kernels launched without the attribute (cuBLAS, torch's own) are serialised as usual,
and a graph capture keeps the programmatic edges (torch 2.11 + Triton 3.6 on an H200,
``benchmarks/kernels/pdl_chain.py``: a chain of one-row kernels 1.29 -> 1.11 us per kernel;
W5's per-layer mix with cuBLAS GEMVs -7.5 to -9%, the same outputs bit for bit).

A kernel takes ``GDC: tl.constexpr`` and calls ``gdc_enter(GDC)`` first; its Python wrapper
takes ``pdl: bool = False`` and launches with ``GDC=pdl, **launch_options(pdl)``. With
``pdl=False`` the branch is compiled out and no launch option is passed, so the kernels stay
portable (ROCm, XPU, the CPU interpreter). Who turns it on: the kernels' owners
(``TritonOps``, ``TritonAttentionBackend``, ``TritonMoEBackend``) from the platform option
``triton_pdl``, whose default the CUDA platform sets from the device (``supports_pdl``).
"""

from __future__ import annotations

import triton
import triton.language as tl

PDL_MIN_CAPABILITY = (9, 0)
OPTION = "triton_pdl"  # the platform option the kernels' owners read (``OPTION_PREFIX`` + "pdl")


@triton.jit
def gdc_enter(GDC: tl.constexpr):
    """First statement of a PDL-capable kernel: wait for the stream's earlier kernels, then
    let the next one be scheduled. Compiled out when ``GDC`` is false."""
    if GDC:
        tl.extra.cuda.gdc_wait()
        tl.extra.cuda.gdc_launch_dependents()


def launch_options(pdl: bool) -> dict:
    """Extra keyword arguments of a ``kernel[grid](...)`` launch: the PDL attribute when on,
    nothing otherwise (other backends and the interpreter do not know the option)."""
    return {"launch_pdl": True} if pdl else {}


def triton_has_pdl() -> bool:
    """Whether this Triton has the ``griddepcontrol`` intrinsics (3.4 and later)."""
    cuda = getattr(getattr(tl, "extra", None), "cuda", None)
    return all(hasattr(cuda, f) for f in ("gdc_wait", "gdc_launch_dependents"))


def supports_pdl(capability: tuple[int, int] | None, interpreted: bool | None = None
                 ) -> tuple[bool, str]:
    """``(usable, why not)`` for a GPU of compute ``capability`` (``None``: no such GPU);
    ``interpreted`` defaults to whether Triton runs kernels in its interpreter."""
    if interpreted is None:
        interpreted = bool(triton.knobs.runtime.interpret)
    if interpreted:
        return False, "the Triton interpreter (TRITON_INTERPRET=1) has no dependent launch"
    if capability is None:
        return False, "programmatic dependent launch needs a GPU of compute capability 9.0+"
    if tuple(capability) < PDL_MIN_CAPABILITY:
        major, minor = capability
        return False, (f"programmatic dependent launch needs compute capability 9.0+ (Hopper); "
                       f"this GPU is {major}.{minor}")
    if not triton_has_pdl():
        return False, f"Triton {triton.__version__} lacks tl.extra.cuda.gdc_wait (3.4+ has it)"
    return True, ""
