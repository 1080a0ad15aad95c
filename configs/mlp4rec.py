"""MLP4Rec (Li et al., IJCAI 2022): see `pmix_jax/models/mlp4rec.py`.

The reference run script's settings: hidden 128, 4 layers, dropout 0.5, lr 1e-4, batch 256,
100 epochs (with early stopping). It mixes every field in `config.data.features`.

Costly: every field goes through 4x-wide sequence and channel MLPs in every layer. With 3
fields, length 50 and batch 256 a training step is ~210 GFLOP (XLA's count), 46x Pyramid
Mixer's default and ~6.5 s on a busy 2-core CPU.
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
  config = base.get_config()
  config.model.name = 'mlp4rec'
  config.model.hidden = 128
  config.model.dropout = 0.5
  config.model.num_layers = 4
  config.model.expansion = 4.0  # Every mixer's MLP width / the length of the axis it mixes.
  # True: one sequence, channel and feature mixer applied num_layers times (the reference).
  config.model.share_layers = True
  config.model.readout = 'item'  # 'item' (the reference's) | 'concat' (all fields -> D)
  config.train.lr = 1e-4
  config.train.num_epochs = 100
  config.lock()
  return config
