"""Entry point of the Intel XPU platform (group ``anyware.platforms``, name ``xpu``).

Returns the platform class lazily: importing this module imports no vendor library.
"""

from anyware.plugin import hookimpl


@hookimpl
def anyware_platform():
    from anyware_xpu.platform import XpuPlatform

    return XpuPlatform
