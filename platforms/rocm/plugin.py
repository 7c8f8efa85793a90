"""Entry point of the ROCm platform (group ``anyware.platforms``, name ``rocm``).

Returns the platform class lazily: importing this module imports neither aiter nor triton.
"""

from anyware.plugin import hookimpl


@hookimpl
def anyware_platform():
    from anyware_rocm.platform import RocmPlatform

    return RocmPlatform
