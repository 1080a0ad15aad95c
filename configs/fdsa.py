"""FDSA (Zhang et al., IJCAI 2019): item- and feature-level causal self-attention streams.

Needs side fields (`data.features`, by default `('action', 'category')`).
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
  config = base.get_config()
  config.model.name = 'fdsa'
  config.model.num_layers = 2  # Per stream.
  config.model.num_heads = 1
  config.model.pre_norm = True  # False: post-LayerNorm blocks.
  config.train.targets = 'seq2seq'
  config.train.batch_size = 32  # As SASRec: ~1,600 targets a step at max_len 50.
  config.lock()
  return config
