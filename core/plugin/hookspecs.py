"""pluggy hook specifications (project name ``anyware``): the hooks a plugin module implements.

Two kinds of plugin module, each registered through an entry point:

* a **platform plugin** (group :data:`PLATFORM_GROUP`, ``anyware.platforms``; the entry-point
  name is the platform name) implements :func:`anyware_platform`;
* an **extension plugin** (group :data:`EXTENSION_GROUP`, ``anyware.extensions``) contributes
  to platforms it serves: lifecycle hooks and contribution hooks. Every extension hook
  receives the selected :class:`~anyware.plugin.platform.Platform` instance as ``platform``
  (keyword arguments, as pluggy passes them); an extension checks ``platform.name`` (or
  ``platform.device_type``) and returns ``None`` for platforms it does not serve.

The core calls the hooks; a plugin never calls them. A hook implementation whose name starts
with ``anyware_`` but matches no spec below is an error at load (a misspelling is never
silently ignored). Implementations are marked with :data:`hookimpl`.
"""

from __future__ import annotations

import pluggy

PROJECT = "anyware"
PLATFORM_GROUP = "anyware.platforms"
EXTENSION_GROUP = "anyware.extensions"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ---------------------------------------------------------------- identity (discovery)
@hookspec
def anyware_platform():
    """Name the platform a platform plugin provides.

    Called: at discovery, once per process for every module registered in the
    ``anyware.platforms`` group, before the platform is probed.

    Returns: the plugin's :class:`~anyware.plugin.platform.Platform` subclass — the class, not
    an instance; its ``name`` must equal the entry-point name and its ``plugin_api_version``
    must be compatible with ``PLUGIN_API_VERSION``.

    May not: import vendor libraries at the plugin module's import time (import the platform
    module inside the hook, so that a broken optional dependency makes only this plugin
    "unavailable"), initialise a device, or return more than one class.
    """


# ---------------------------------------------------------------- lifecycle (extensions)
@hookspec
def anyware_configure(platform, config):
    """React to the configuration the platform accepted.

    Called: once per process, after the core validated ``config`` against the capabilities and
    the platform's ``_configure`` returned it; before init_device.

    Parameters: ``platform`` — the selected Platform instance; ``config`` — the final
    :class:`~anyware.plugin.platform.PlatformConfig` (no ``None`` defaults left).

    Returns: nothing (the return value is ignored; the configuration cannot be changed here).

    May not: touch the device. Raise :class:`~anyware.plugin.errors.CapabilityError` with the
    reason to reject the configuration; the engine then does not start.
    """


@hookspec
def anyware_init_device(platform, rank):
    """React to this rank's device being ready.

    Called: once per process, right after the platform's ``_init_device`` returned;
    ``platform.device`` is set.

    Parameters: ``platform`` — the selected Platform instance; ``rank`` — the global rank.

    Returns: nothing.

    May not: allocate large buffers (the KV pool is sized from the free memory afterwards) or
    initialise ``torch.distributed``.
    """


@hookspec
def anyware_model_loaded(platform, model):
    """React to the model being ready on the device (e.g. repack weights for a contributed
    kernel).

    Called: once per model, after its weights are on the device and the platform's
    ``_model_loaded`` ran; before the KV pool is allocated and graphs are captured.

    Parameters: ``platform`` — the selected Platform instance; ``model`` — the
    ``torch.nn.Module``.

    Returns: nothing.

    May not: change the model's outputs beyond the op tolerances of the conformance suite.
    """


@hookspec
def anyware_shutdown(platform):
    """Release what the extension allocated for ``platform``.

    Called: once, at engine shutdown, before the platform's own ``_shutdown``; also after a
    failed start, so it must tolerate resources that were never created.

    Parameters: ``platform`` — the selected Platform instance.

    Returns: nothing. May not: raise for resources that do not exist.
    """


# ---------------------------------------------------------------- contributions (extensions)
@hookspec
def anyware_attention_backends(platform):
    """Contribute attention backends to ``platform``.

    Called: whenever the core lists the platform's backends — capability derivation,
    configure, backend selection; possibly several times and before init_device.

    Parameters: ``platform`` — the selected Platform instance.

    Returns: a list of :class:`~anyware.plugin.ops.attention.AttentionBackend` subclasses
    (classes, not instances) usable on ``platform``, or ``None``. The core merges them with
    the platform's own and orders all by ``priority``: a contributed backend with the highest
    priority becomes the default, and its declared features and page sizes the effective
    capabilities.

    May not: instantiate the backends, import heavy libraries eagerly, or depend on the
    device being initialised.
    """


@hookspec
def anyware_moe_backends(platform):
    """Contribute MoE backends to ``platform``.

    Called: when the model builds its MoE layers, after init_device (and by the conformance
    suite's MoE tier).

    Parameters: ``platform`` — the selected Platform instance.

    Returns: a list of :class:`~anyware.plugin.ops.moe.MoEBackend` subclasses usable on
    ``platform`` (routing, dispatch, expert compute and combine of MoE layers, and the expert
    weight layout they want), or ``None``. The core merges them with the platform's own
    ``_moe_backends``; the highest ``priority`` that accepts a layer's spec wins.

    May not: instantiate them or touch the device.
    """


@hookspec
def anyware_communicators(platform):
    """Contribute communicators (collectives) to ``platform``.

    Called: when the core builds this rank's communicator, after init_device and after the
    launcher initialised ``torch.distributed``.

    Parameters: ``platform`` — the selected Platform instance.

    Returns: a list of :class:`~anyware.plugin.ops.comm.Communicator` subclasses (constructed
    as ``cls(rank, world_size)``) usable on ``platform``, or ``None``. The highest
    ``priority`` wins over the platform's own ``_communicator``.

    May not: instantiate them or initialise the process group.
    """


@hookspec
def anyware_conformance_metadata(platform):
    """Add waivers and known failures the conformance suite applies to ``platform`` (for
    example for a contributed backend).

    Called: by the conformance suite at collection time, before init_device.

    Parameters: ``platform`` — the Platform instance under test.

    Returns: a :class:`~anyware.plugin.conformance.ConformanceMetadata`, or ``None``. The core
    appends its waivers and known failures to the platform's own.

    May not: remove or loosen the platform's own entries (it can only add).
    """
