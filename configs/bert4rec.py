"""BERT4Rec (Sun et al., CIKM 2019): masked-item training, NOTES section 4 defaults."""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
  config = base.get_config()
  config.model.name = 'bert4rec'
  config.model.num_layers = 2
  config.model.num_heads = 2
  config.model.mask_prob = 0.2  # Share of a sequence's items replaced by [mask].
  config.model.ffn_multiplier = 4  # Feed-forward width / hidden, as in BERT.
  # Windows of max_len behaviors; the model masks items inside each (its training_loss).
  config.train.targets = 'seq2seq'
  config.train.batch_size = 32
  config.lock()
  return config
