"""anyware_tpu: the TPU platform on JAX through torchax (runs on JAX's CPU backend in CI)."""

__version__ = "0.1.0"
