"""The core side of the plugin contract: how the core finds, selects, checks and drives a
platform plugin.

``anyware.plugin`` says what a plugin implements and receives; this package does everything
else: discovery through entry points (:mod:`~anyware.runtime.discovery`), selection
(:mod:`~anyware.runtime.selection`), configuration checks (:mod:`~anyware.runtime.validation`),
the effective capabilities (:mod:`~anyware.runtime.capabilities`), merging of extension
contributions (:mod:`~anyware.runtime.contributions`) and the :class:`PlatformDriver` the
engine, the CLI and the conformance suite hold. It imports only the contract; platforms never
import it.
"""

from anyware.runtime.capabilities import EffectiveCapabilities
from anyware.runtime.compat import check_api_version
from anyware.runtime.discovery import PlatformInfo, discover, probe
from anyware.runtime.driver import PlatformDriver
from anyware.runtime.selection import ENV_VAR, choose, load_platform

__all__ = [
    "ENV_VAR",
    "EffectiveCapabilities",
    "PlatformDriver",
    "PlatformInfo",
    "check_api_version",
    "choose",
    "discover",
    "load_platform",
    "probe",
]
