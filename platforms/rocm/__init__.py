"""anyware_rocm: the AMD ROCm platform (HIP through torch.cuda, aiter kernels when importable,
portable Triton otherwise, RCCL)."""

__version__ = "0.1.0"
