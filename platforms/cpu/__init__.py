"""anyware_cpu: the CPU reference platform (plain torch, gloo, eager)."""

__version__ = "0.1.0"
