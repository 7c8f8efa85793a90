"""The engine: request state, scheduling loop thread, and the offline API."""
