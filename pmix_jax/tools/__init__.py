"""Command-line tools that inspect a config's model: `python -m pmix_jax.tools.cost`."""
