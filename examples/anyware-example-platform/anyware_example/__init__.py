"""anyware_example: an out-of-tree Anyware plugin distribution, installed like a vendor's.

It contributes one real thing, a paged-attention backend in plain torch that keeps the KV cache
head-major ("HND": ``[pages, kv_heads, page_size, head_dim]`` per layer, declared through
``KVLayout(head_major=True)``), and shows both ways to extend Anyware:

* a new platform, ``example`` (entry point group ``anyware.platforms``,
  :mod:`anyware_example.plugin`), whose default attention backend is the HND one;
* an extension (group ``anyware.extensions``, :mod:`anyware_example.extension`) that
  contributes the same backend to the existing ``cpu`` platform, selected by name
  (``--attention-backend example-hnd``).

Anyware never imports this package; it finds it through the entry points, as any plugin. It
imports only ``anyware.plugin`` and ``anyware.kernels``.
"""

__version__ = "0.1.0"
