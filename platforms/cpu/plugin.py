"""Entry point of the CPU platform (group ``anyware.platforms``, name ``cpu``)."""

from anyware.plugin import hookimpl


@hookimpl
def anyware_platform():
    from anyware_cpu.platform import CpuPlatform

    return CpuPlatform
