"""FPMC (Rendle et al., WWW 2010): see `pmix_jax/models/fpmc.py`.

The same data and training as BPR-MF (the user field, windows, the BPR loss).
"""

import ml_collections

from configs import bpr_mf


def get_config() -> ml_collections.ConfigDict:
  config = bpr_mf.get_config()  # Locked: values change, keys cannot be added.
  config.model.name = 'fpmc'
  return config
