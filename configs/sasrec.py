"""SASRec (Kang & McAuley, ICDM 2018) with full-softmax cross-entropy by default."""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
  config = base.get_config()
  config.model.name = 'sasrec'
  config.model.num_layers = 2
  config.model.num_heads = 1
  config.model.pre_norm = True  # False: post-LayerNorm as in the Transformer paper.
  config.train.targets = 'seq2seq'
  config.lock()
  return config
