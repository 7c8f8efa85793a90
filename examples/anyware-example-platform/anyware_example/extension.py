"""Extension plugin (group ``anyware.extensions``): contributes the head-major attention backend
to the in-tree ``cpu`` platform.

Every hook receives the selected platform instance and returns ``None`` for platforms it does
not serve. The backend's priority (-10) is below the cpu platform's own, so installing this
package changes nothing until a user names it: ``--attention-backend example-hnd``. (The
``example`` platform lists the backend itself and is not served here.)
"""

from __future__ import annotations

from anyware.plugin import hookimpl

SERVED = frozenset({"cpu"})


@hookimpl
def anyware_attention_backends(platform):
    if platform.name not in SERVED:
        return None
    from anyware_example.hnd_attention import HndAttentionBackend

    return [HndAttentionBackend]
