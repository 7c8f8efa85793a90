"""Entry point of the TPU platform (group ``anyware.platforms``, name ``tpu``).

Returns the platform class lazily: importing this module imports neither jax nor torchax.
"""

from anyware.plugin import hookimpl


@hookimpl
def anyware_platform():
    from anyware_tpu.platform import TpuPlatform

    return TpuPlatform
