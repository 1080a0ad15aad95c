"""SLi-Rec (Yu et al., IJCAI 2019): see `pmix_jax/models/sli_rec.py`. Microsoft Recommenders'
`sli_rec.yaml`: E = 40 (its 32-wide item and 8-wide category embeddings; we embed the item
alone) for embeddings and the LSTM, attention MLP (80, 40), prediction MLP (100, 64), dropout
0.3 on their hidden layers, truncated N(0, 0.01) weights, embedding and layer L2 1e-4, Adam
lr 1e-3, 50 epochs, softmax over the target and 4 negatives. No timestamps: the LSTM has no
time gates (see the model's doc).

The code's batch of 400 counts the negatives' rows too (80 targets and their 4 negatives
each); here the batch counts targets: `--config.train.batch_size=80` gives the code's step.
Scoring runs the attention MLP for every (row, item, behavior): lower
`config.model.score_chunk` if evaluation runs out of memory.
"""

import ml_collections

from configs import base


def shared(name: str, *, user: bool) -> ml_collections.ConfigDict:
  """What SURGE, SLi-Rec and A2SVD take from Microsoft Recommenders' code, whose training
  the SURGE-family model code (`pmix_jax/models/sli_rec.py`) follows: E, the prediction MLP,
  its dropout, initialisation and L2, and the loss. `user`: also the derived `user` field
  and its switch (A2SVD and SLi-Rec; SURGE reads no user). Unlocked: the model adds its keys.
  """
  config = base.get_config()
  config.model.name = name
  config.model.hidden = 40  # E
  config.model.dropout = 0.3  # On the hidden MLP layers.
  config.model.layer_sizes = (100, 64)  # The prediction MLP.
  config.model.embed_l2 = 1e-4  # On the embedding rows a batch touches.
  config.model.layer_l2 = 1e-4  # On every other parameter.
  config.model.init_std = 0.01
  config.data.features = ()  # The item alone: no category (see the model's doc).
  if user:
    config.model.use_user = False  # True: the long-term u^l + p_u (the code has none).
    config.model.user_field = 1  # The derived 'user' field, the first feature below.
    config.data.features = ('user',)
  config.train.targets = 'prefix'  # Not causal: one target per row.
  config.train.loss = 'sampled_softmax'  # The code's softmax over the target and negatives.
  config.train.num_negatives = 4
  config.train.num_epochs = 50
  return config


def get_config() -> ml_collections.ConfigDict:
  config = shared('sli_rec', user=True)  # E is also the LSTM's width.
  config.model.att_fcn_layer_sizes = (80, 40)  # The attention and fusion MLPs.
  # (row, item) pairs that score_items runs at once (memory ~ score_chunk * L * 80 floats).
  config.model.score_chunk = 1 << 14
  config.lock()
  return config
