"""Entry point of the Ascend NPU platform (group ``anyware.platforms``, name ``npu``).

Returns the platform class lazily: importing this module imports no torch_npu.
"""

from anyware.plugin import hookimpl


@hookimpl
def anyware_platform():
    from anyware_npu.platform import NpuPlatform

    return NpuPlatform
