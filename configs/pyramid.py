"""Pyramid Mixer (SIGIR 2025): every component on; see `pmix_jax/models/pyramid_mixer.py`."""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
  config = base.get_config()
  config.model.name = 'pyramid_mixer'
  config.model.layers_per_level = 1
  config.model.kernel_sizes = (2,)  # One entry per level transition: 2 levels.
  config.model.strides = (2,)
  config.model.behavior_rank = 16  # Latent interests of the cross-behavior mixer.
  config.model.feature_rank = 32
  config.model.low_rank = True
  config.model.mlp_ratio = 2.0  # Width of the full-rank mixers when low_rank=False.
  config.model.activation = 'gelu'  # 'gelu' | 'swish'
  config.model.cross_behavior = True
  config.model.cross_feature = True
  config.model.fusion = 'gate'  # 'gate' (Eq. 2) | 'sum'
  config.lock()
  return config
