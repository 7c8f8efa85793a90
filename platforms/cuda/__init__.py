"""anyware_cuda: the NVIDIA CUDA platform (Triton kernels, FlashInfer when present, NCCL,
decode and prefill CUDA graphs from the torch-device toolkit ``anyware_torchdev``)."""

__version__ = "0.1.0"
