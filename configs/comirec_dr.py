"""ComiRec-DR (Cen et al., KDD 2020): see `pmix_jax/models/comirec.py`. The official
code's settings (THUDM/ComiRec, its Taobao setting where the datasets differ): d = 64,
K = 4 interests, 3 routing iterations from zero logits, history of 50, batch 256, Adam
lr 1e-3, no dropout and no gradient clipping.

Loss: a sampled softmax, as the paper and the code. The code draws 10 negatives per row
of the batch, shared by the batch (TensorFlow's `sampled_softmax_loss`, log-uniform without
replacement, with its log-Q correction); the package's `sampled_softmax` draws
`num_negatives` uniform items with replacement, shared by the batch: 10 x 256. Keep
`num_negatives` = 10 x `batch_size` when changing the batch.
"""

import ml_collections

from configs import base


def shared(name: str) -> ml_collections.ConfigDict:
  """What both ComiRec variants take from the code (unlocked: the variant adds its keys)."""
  config = base.get_config()
  config.model.name = name
  config.model.dropout = 0.0
  config.model.num_interests = 4  # K
  config.train.targets = 'prefix'  # Not causal: one target per row.
  config.train.loss = 'sampled_softmax'
  config.train.num_negatives = 10 * config.train.batch_size  # 10 per row, as the code.
  config.train.grad_clip_norm = 0.0
  return config


def get_config() -> ml_collections.ConfigDict:
  config = shared('comirec_dr')
  config.model.routing_iterations = 3
  config.model.routing_init = 'zeros'  # The code's; 'random': a N(0, 1) draw in training.
  config.lock()
  return config
