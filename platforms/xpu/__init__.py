"""anyware_xpu: the Intel XPU platform (stock torch.xpu, SDPA paged attention,
vllm-xpu-kernels when installed, XCCL)."""

__version__ = "0.1.0"
