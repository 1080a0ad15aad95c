"""MLP-Mixer (Tolstikhin et al., 2021) on item sequences, the Pyramid Mixer paper's baseline.

See `pmix_jax/models/mlp_mixer.py`. Neither paper gives its hyperparameters for
recommendation: base's hidden 64, dropout 0.2 and lr 1e-3, 2 blocks, and MLP widths of 4x
the mixed axis (MLP4Rec's expansion factor).
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
  config = base.get_config()
  config.model.name = 'mlp_mixer'
  config.model.num_layers = 2
  config.model.token_mlp_ratio = 4.0  # Token-mixing MLP width / sequence length.
  config.model.channel_mlp_ratio = 4.0  # Channel-mixing MLP width / hidden.
  config.lock()
  return config
