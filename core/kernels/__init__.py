"""Portable kernels: torch reference ops (the numerics oracle) and Triton kernels that several
platforms reuse. Importing this package imports no vendor library; the Triton kernels live in
``anyware.kernels.triton`` and import ``triton`` only there."""
