"""pmix-jax: sequential recommendation in JAX/Flax (Pyramid Mixer, MGNM, AutoMLP, baselines)."""
