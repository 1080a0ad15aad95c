"""A2SVD (the SLi-Rec paper's long-term model): see `pmix_jax/models/sli_rec.py`. Microsoft
Recommenders' `asvd.yaml`: E = 40 (its 32-wide item and 8-wide category embeddings; we embed
the item alone), prediction MLP (100, 64) with dropout 0.3, truncated N(0, 0.01) weights,
embedding and layer L2 1e-4, Adam lr 1e-3, 50 epochs, softmax over the target and 4 negatives.

The code's batch of 400 counts the negatives' rows too (80 targets and their 4 negatives
each); here the batch counts targets: `--config.train.batch_size=80` gives the code's step.
`--config.model.use_user=True` adds SVD++'s user factor (the code has none); the `user`
field is kept so that it needs no other flag.
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
  config = base.get_config()
  config.model.name = 'a2svd'
  config.model.hidden = 40  # E
  config.model.dropout = 0.3  # On the hidden MLP layers.
  config.model.layer_sizes = (100, 64)  # The prediction MLP.
  config.model.use_user = False  # True: u^l + p_u.
  config.model.user_field = 1  # The derived 'user' field, the first feature below.
  config.model.embed_l2 = 1e-4  # On the embedding rows a batch touches.
  config.model.layer_l2 = 1e-4  # On every other parameter.
  config.model.init_std = 0.01
  # (row, item) pairs that score_items runs at once (memory ~ score_chunk * 100 floats).
  config.model.score_chunk = 1 << 20
  config.data.features = ('user',)
  config.train.targets = 'prefix'  # Not causal: one target per row.
  config.train.loss = 'sampled_softmax'  # The code's softmax over the target and negatives.
  config.train.num_negatives = 4
  config.train.num_epochs = 50
  config.lock()
  return config
