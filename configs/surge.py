"""SURGE (Chang et al., SIGIR 2021): see `pmix_jax/models/surge.py`. The authors' code and
Microsoft Recommenders' settings: E = 40 (their 32-wide item and 8-wide category embeddings;
we embed the item alone) for embeddings, fusion layer and AUGRU, attention MLPs (80, 40),
prediction MLP (100, 64), dropout 0.3 on their hidden layers, ε = 0.5 of the edges kept,
30 nodes kept by the pooling, one metric head, truncated N(0, 0.01) weights, embedding and
layer L2 1e-4, Adam lr 1e-3, softmax over the target and 4 negatives, histories of 50.

The code's batch counts the negatives' rows too (a fifth of it are targets); here the batch
counts targets. Scoring runs the graph network for every (row, item): lower
`config.model.score_chunk` if evaluation runs out of memory.
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
  config = base.get_config()
  config.model.name = 'surge'
  config.model.hidden = 40  # E
  config.model.dropout = 0.3  # On the hidden MLP layers.
  config.model.layer_sizes = (100, 64)  # The prediction MLP.
  config.model.att_fcn_layer_sizes = (80, 40)  # The attention MLPs.
  config.model.relative_threshold = 0.5  # ε
  config.model.pool_length = 30
  config.model.metric_heads = 1
  config.model.embed_l2 = 1e-4  # On the embedding rows a batch touches.
  config.model.layer_l2 = 1e-4  # On every other parameter.
  config.model.init_std = 0.01
  # (row, item) pairs that score_items runs at once (memory ~ score_chunk * L * (L + 320)).
  config.model.score_chunk = 1 << 11
  config.data.features = ()
  config.train.targets = 'prefix'  # Not causal: one target per row.
  config.train.loss = 'sampled_softmax'  # The code's softmax over the target and negatives.
  config.train.num_negatives = 4
  config.train.num_epochs = 50
  config.lock()
  return config
