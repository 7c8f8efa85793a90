"""Entry point of the CUDA platform (group ``anyware.platforms``, name ``cuda``).

Returns the platform class lazily: importing this module imports neither torch.cuda state nor
triton nor flashinfer.
"""

from anyware.plugin import hookimpl


@hookimpl
def anyware_platform():
    from anyware_cuda.platform import CudaPlatform

    return CudaPlatform
