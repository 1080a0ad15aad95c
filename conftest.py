"""Puts the repository root on sys.path so tests import `pmix_jax` and `configs`."""
