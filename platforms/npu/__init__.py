"""anyware_npu: the Huawei Ascend NPU platform (torch_npu fused operators, HCCL)."""

__version__ = "0.1.0"
