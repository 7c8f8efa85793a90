"""Entry point of the ``example`` platform (group ``anyware.platforms``). Tiny on purpose: the
platform module is imported inside the hook."""

from anyware.plugin import hookimpl


@hookimpl
def anyware_platform():
    from anyware_example.platform import ExamplePlatform

    return ExamplePlatform
