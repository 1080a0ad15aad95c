"""FMLP-Rec (Zhou et al., WWW 2022): see `pmix_jax/models/fmlp_rec.py`.

The paper's defaults: 2 filter blocks, hidden 64, dropout 0.5, sequence length 50, lr 1e-3
(hidden, length and lr are base's). Not causal, so it trains on prefixes (base's
`train.targets = 'prefix'`), not on every position as the reference code does.
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
  config = base.get_config()
  config.model.name = 'fmlp_rec'
  config.model.dropout = 0.5
  config.model.num_layers = 2
  config.model.activation = 'gelu'  # 'gelu' | 'relu' | 'swish'
  # True: padded positions are zero at the input and after every block; False: the
  # reference code's (position embeddings at padded positions, no masking).
  config.model.mask_padding = True
  config.lock()
  return config
