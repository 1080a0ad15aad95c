"""Experiment configurations: small files returning `ml_collections.ConfigDict`."""
