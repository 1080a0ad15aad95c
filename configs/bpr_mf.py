"""BPR-MF (Rendle et al., UAI 2009): see `pmix_jax/models/bpr_mf.py`."""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
  config = base.get_config()
  config.model.name = 'bpr_mf'
  config.model.dropout = 0.0
  config.model.user_field = 1  # The derived 'user' field, the first feature below.
  config.data.features = ('user',)
  config.train.targets = 'seq2seq'  # Causal: every training interaction of a window.
  config.train.batch_size = 32
  config.train.loss = 'bpr'
  config.train.num_negatives = 1
  config.lock()
  return config
