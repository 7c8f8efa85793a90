"""Named exceptions raised across the plugin boundary."""


class AnywareError(Exception):
    """Base class of every error Anyware raises on purpose."""


class PluginError(AnywareError):
    """A platform plugin could not be loaded, probed or used."""


class PluginVersionError(PluginError):
    """A plugin targets a plugin-API version this engine cannot load."""


class PlatformSelectionError(PluginError):
    """No platform, an unknown platform, or an ambiguous choice of platforms."""


class CapabilityError(AnywareError):
    """A requested feature is not among the selected platform's declared capabilities."""


class DeviceError(AnywareError):
    """A device or memory operation failed inside a platform plugin."""
