"""Pyramid Mixer (SIGIR 2025): every component on; see `pmix_jax/models/pyramid_mixer.py`.

The paper's ablations are variants of this config, not code forks:

    python main.py --config=configs/pyramid.py:without_cross_behavior --workdir=...

`without_cross_behavior`, `without_cross_feature`, `without_cross_period` (one level, no
period scaling), `without_low_rank` (full-rank MLP-Mixer mixers) and `sum_fusion` (no gate).
"""

import ml_collections

from configs import base

# Variant name -> the model keys it changes.
ABLATIONS = {
    'without_cross_behavior': dict(cross_behavior=False),
    'without_cross_feature': dict(cross_feature=False),
    'without_cross_period': dict(kernel_sizes=(), strides=()),
    'without_low_rank': dict(low_rank=False),
    'sum_fusion': dict(fusion='sum'),
}


def get_config(variant: str = '') -> ml_collections.ConfigDict:
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
  if variant:
    if variant not in ABLATIONS:
      raise ValueError(f'unknown Pyramid Mixer variant {variant!r}; known: {sorted(ABLATIONS)}')
    config.model.update(ABLATIONS[variant])
  config.lock()
  return config
