"""A2SVD (the SLi-Rec paper's long-term model): see `pmix_jax/models/sli_rec.py`. Microsoft
Recommenders' `asvd.yaml`: E = 40 (its 32-wide item and 8-wide category embeddings; we embed
the item alone), prediction MLP (100, 64) with dropout 0.3, truncated N(0, 0.01) weights,
embedding and layer L2 1e-4, Adam lr 1e-3, 50 epochs, softmax over the target and 4 negatives.

The code's batch of 400 counts the negatives' rows too (80 targets and their 4 negatives
each); here the batch counts targets: `--config.train.batch_size=80` gives the code's step.
`--config.model.use_user=True` adds SVD++'s user factor (the code has none); the `user`
field is kept so that it needs no other flag. The settings shared with SLi-Rec and SURGE come
from `configs/sli_rec.shared`.
"""

import ml_collections

from configs import sli_rec


def get_config() -> ml_collections.ConfigDict:
  config = sli_rec.shared('a2svd', user=True)
  # (row, item) pairs that score_items runs at once (memory ~ score_chunk * 100 floats).
  config.model.score_chunk = 1 << 20
  config.lock()
  return config
