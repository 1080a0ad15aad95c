"""SURGE (Chang et al., SIGIR 2021): see `pmix_jax/models/surge.py`. The authors' code and
Microsoft Recommenders' settings: E = 40 (their 32-wide item and 8-wide category embeddings;
we embed the item alone) for embeddings, fusion layer and AUGRU, attention MLPs (80, 40),
prediction MLP (100, 64), dropout 0.3 on their hidden layers, ε = 0.5 of the edges kept,
30 nodes kept by the pooling, one metric head, truncated N(0, 0.01) weights, embedding and
layer L2 1e-4, Adam lr 1e-3, softmax over the target and 4 negatives, histories of 50.

The code's batch counts the negatives' rows too (a fifth of it are targets); here the batch
counts targets. Scoring runs the graph network for every (row, item): lower
`config.model.score_chunk` if evaluation runs out of memory. The settings shared with SLi-Rec
and A2SVD come from `configs/sli_rec.shared`.
"""

import ml_collections

from configs import sli_rec


def get_config() -> ml_collections.ConfigDict:
  config = sli_rec.shared('surge', user=False)  # E is also the fusion layer's and AUGRU's.
  config.model.att_fcn_layer_sizes = (80, 40)  # The attention MLPs.
  config.model.relative_threshold = 0.5  # ε
  config.model.pool_length = 30
  config.model.metric_heads = 1
  # (row, item) pairs that score_items runs at once (memory ~ score_chunk * L * (L + 320)).
  config.model.score_chunk = 1 << 11
  config.lock()
  return config
