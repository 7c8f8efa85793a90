"""anyware_cuda: the NVIDIA CUDA platform (Triton kernels, FlashInfer when present, NCCL,
CUDA graphs for decode)."""

__version__ = "0.1.0"
