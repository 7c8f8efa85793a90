"""pluggy hook specifications (project name ``anyware``).

Platform plugins (entry-point group ``anyware.platforms``) implement ``anyware_platform``.
Extension plugins (group ``anyware.extensions``) contribute backends to existing platforms;
they receive the platform object and return nothing for platforms they do not serve.
"""

from __future__ import annotations

import pluggy

PROJECT = "anyware"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ---------------------------------------------------------------- identity (probe stage)
@hookspec
def anyware_platform():
    """Return the plugin's :class:`~anyware.plugin.platform.Platform` subclass (not an
    instance). Must be cheap: no vendor imports, no device initialisation."""


# ---------------------------------------------------------------- lifecycle
@hookspec
def anyware_configure(platform, config):
    """Called after ``platform.configure`` validated ``config``; raise to reject it."""


@hookspec
def anyware_init_device(platform, rank):
    """Called after the platform initialised this rank's device."""


@hookspec
def anyware_model_loaded(platform, model):
    """Called once the model's weights are on the device."""


@hookspec
def anyware_shutdown(platform):
    """Called before the platform releases its resources."""


# ---------------------------------------------------------------- contributions
@hookspec
def anyware_attention_backends(platform):
    """Return a list of :class:`AttentionBackend` subclasses usable on ``platform``."""


@hookspec
def anyware_moe_backends(platform):
    """Return a list of :class:`~anyware.plugin.ops.moe.MoEBackend` subclasses usable on
    ``platform`` (routing, dispatch, expert compute and combine of MoE layers, and the expert
    weight layout they want; the highest ``priority`` that accepts a layer's spec wins)."""


@hookspec
def anyware_communicators(platform):
    """Return a list of :class:`Communicator` subclasses usable on ``platform``."""


@hookspec
def anyware_conformance_metadata(platform):
    """Return a :class:`ConformanceMetadata` (waivers, known failures) for ``platform``."""
