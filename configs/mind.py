"""MIND (Li et al., CIKM 2019): see `pmix_jax/models/mind.py`. The settings of ComiRec's
MIND baseline (THUDM/ComiRec): d = 64, K = 4 interests, 3 routing iterations, hard
label-aware attention (p = inf), Adam lr 1e-3, no dropout and no gradient clipping; history
of 50 and batch 256 (its Taobao setting; Amazon Books: 20 and 128); one ReLU layer after
the capsules (its Amazon Books setting; Taobao: none). `--config.model.attention_power=2`
gives the paper's soft attention.

Loss: a sampled softmax, as the paper and the code. The code draws 10 negatives per row
of the batch, shared by the batch (TensorFlow's `sampled_softmax_loss`, log-uniform without
replacement, with its log-Q correction); the package's `sampled_softmax` draws
`num_negatives` uniform items with replacement, shared by the batch: 10 x 256. Keep
`num_negatives` = 10 x `batch_size` when changing the batch.

The paper's user profile needs the derived `user` feature field; the `user` variant adds it
to config.data.features and points the model at it (its embedding is concatenated to each
capsule before the ReLU layers):

    python main.py --config=configs/mind.py:user --workdir=...
"""

import math

import ml_collections

from configs import base


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  config = base.get_config()
  config.model.name = 'mind'
  config.model.dropout = 0.0
  config.model.num_interests = 4  # K, fixed (no dynamic K'_u).
  config.model.routing_iterations = 3
  # 'random': a fresh N(0, 1) draw of routing logits per row in training, one shared draw in
  # evaluation; 'fixed': the shared draw always.
  config.model.routing_init = 'random'
  config.model.relu_layers = 1
  config.model.attention_power = math.inf  # p of the label-aware attention; inf: hard.
  config.model.user_field = -1  # Index of the 'user' field in the inputs; -1: none.
  if variant == 'user':
    config.data.features = tuple(config.data.features) + ('user',)
    config.model.user_field = len(config.data.features)  # Field 0 is the item.
  elif variant:
    raise ValueError(f"unknown MIND variant {variant!r}; known: ['user']")
  config.train.targets = 'prefix'  # Not causal: one target per row.
  config.train.loss = 'sampled_softmax'
  config.train.num_negatives = 10 * config.train.batch_size  # 10 per row, as the code.
  config.train.grad_clip_norm = 0.0
  config.lock()
  return config
