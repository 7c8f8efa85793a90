"""Tests of the OpenAI-compatible server (real engine, tiny random model, real HTTP)."""
