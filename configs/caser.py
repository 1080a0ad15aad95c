"""Caser (Tang & Wang, WSDM 2018), as RecBole's Caser: one target per prefix.

Defaults: window 5 (the paper's L), 16 horizontal filters per height (paper and RecBole),
8 vertical filters and dropout 0.4 (RecBole's Caser.yaml; the paper's are 4 and 0.5),
embedding 64 (RecBole; base's `hidden`). RecBole's L2 penalty (reg_weight 1e-4) is not
applied.

The reference's user embedding needs the derived `user` feature field; the `user` variant
adds it to config.data.features and points the model at it:

    python main.py --config=configs/caser.py:user --workdir=...
"""

import ml_collections

from configs import base


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  config = base.get_config()
  config.model.name = 'caser'
  config.model.dropout = 0.4  # RecBole (paper: 0.5).
  config.model.window = 5  # The paper's L.
  config.model.num_horizontal = 16  # n_h: paper and RecBole.
  config.model.num_vertical = 8  # n_v: RecBole (paper: 4).
  config.model.user_field = -1  # Index of the 'user' field in the inputs; -1: none.
  if variant == 'user':
    config.data.features = tuple(config.data.features) + ('user',)
    config.model.user_field = len(config.data.features)  # Field 0 is the item.
  elif variant:
    raise ValueError(f"unknown Caser variant {variant!r}; known: ['user']")
  config.lock()
  return config
