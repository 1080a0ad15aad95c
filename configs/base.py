"""Shared defaults. A model config starts from `get_config()` and states only what differs.

Every value can be overridden from the command line, e.g. `--config.train.lr=3e-4`; an
unknown key is an error (the dict is locked).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.data = ml_collections.ConfigDict()
  # Registered names: see `pmix_jax.data.DATASETS`. 'synthetic' needs no files.
  config.data.name = 'synthetic'
  # The dataset's directory (ml-100k, ml-1m-seq) or file (sequence-file, recbole .inter).
  config.data.path = ''
  # Filters applied before the split: 'none', 'recbole_mlp4rec' (iterative 5-core),
  # 'automlp' (5-core items, 10-core users), 'sasrec' (items with < 5 interactions dropped),
  # 'surge' (no filter, temporal split).
  config.data.preset = 'none'
  # 'leave_one_out', 'temporal' (all records 70/10/20 by time) or 'per_user_temporal' (each
  # user 70/10/20 by position); '' takes the preset's ('surge': temporal, others: LOO).
  config.data.split = ''
  # For name='table': a delimited log with a header row; which column plays which role.
  config.data.table = ml_collections.ConfigDict(dict(
      delimiter=',', user='user_id', item='item_id', timestamp='timestamp', rating=''))
  # For name='tfds': 'movielens/100k-ratings' or 'movielens/1m-ratings', prepared in the
  # array_record format under config.data.path (the TFDS data_dir; '' for TFDS's default).
  config.data.tfds_name = 'movielens/100k-ratings'
  # Processed sequences are cached here, keyed by the input files' bytes and config.data;
  # '' disables the cache.
  config.data.cache_dir = '~/.cache/pmix_jax'
  config.data.max_len = 50
  # Batch widths: each batch (training and evaluation) is cut to the smallest of these at or
  # above its longest input, dropping columns that are padding in every row; () keeps every
  # batch max_len wide. Cheaper for models whose cost grows with the width, and exact for
  # every model whose output ignores left padding (tests/models/test_left_padding.py).
  config.data.length_buckets = ()
  # Side feature fields of each behavior, after the item id (field 0).
  config.data.features = ('action', 'category')
  config.data.synthetic = ml_collections.ConfigDict(dict(
      num_users=1000, num_items=400, num_categories=12, mean_length=30, seed=0))

  config.model = ml_collections.ConfigDict()
  config.model.name = ''  # Set by the model config; see `pmix_jax.models.MODELS`.
  config.model.hidden = 64
  config.model.dropout = 0.2

  config.train = ml_collections.ConfigDict()
  # 'prefix': one row per training target (every prefix of a user's training sequence, the
  #   RecBole/MLP4Rec augmentation), loss at the last position only.
  # 'seq2seq': one row per window of max_len, loss at every position (causal models only).
  config.train.targets = 'prefix'
  # seq2seq windows start every `window_stride` behaviors and predict only their latest
  # `window_stride` positions, so each target keeps >= max_len - stride of context; 0 means
  # max_len (no overlap).
  config.train.window_stride = 0
  config.train.batch_size = 256
  # 0: batches are plain random draws. G > 0: rows are sorted by length within pools of G
  # batches, and the batches shuffled, so that batches of short rows are cut short by
  # config.data.length_buckets (a change of the training batches, unlike the cut itself).
  config.train.group_by_length = 0
  config.train.num_epochs = 30
  config.train.optimizer = 'adam'  # 'adam' | 'adamw'
  config.train.lr = 1e-3
  config.train.weight_decay = 0.0
  config.train.schedule = 'constant'  # 'constant' | 'warmup_cosine' | 'warmup_linear'
  config.train.warmup_steps = 0
  config.train.grad_clip_norm = 1.0  # 0 disables clipping.
  # 'softmax': full cross-entropy over all items. 'sampled_softmax': cross-entropy over the
  # target and `num_negatives` uniform negatives shared by the batch. 'bce': binary
  # cross-entropy against `num_negatives` uniform negatives per target (SASRec's original).
  config.train.loss = 'softmax'
  config.train.num_negatives = 1
  config.train.log_every_steps = 50
  config.train.checkpoint_every_steps = 500
  config.train.progress_bar = True

  config.eval = ml_collections.ConfigDict()
  # 'full': rank the target against every item. 'uniform:N' / 'popularity:N': against N
  # sampled negatives (uniform, or by whole-dataset popularity), as papers report; drawn once
  # from `negatives_seed` and saved in the workdir.
  config.eval.protocol = 'full'
  config.eval.negatives_seed = 0
  # The chosen checkpoint is also scored under these protocols after training, e.g.
  # ('full',) beside a paper's sampled protocol; they never drive early stopping.
  config.eval.also_protocols = ()
  config.eval.batch_size = 256
  config.eval.every_epochs = 1
  config.eval.ks = (5, 10, 20)
  config.eval.mask_history = False  # Exclude items already in the user's history.
  # Share of tied items counted above the target: rank = #higher + tie_share * #tied.
  # 1.0 is pessimistic (a model that scores everything equal gets the worst rank).
  config.eval.tie_share = 1.0
  config.eval.early_stopping_metric = 'NDCG@10'
  config.eval.patience = 5  # Evaluations without improvement before stopping; 0 = never.

  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.keep_latest = 2
  return config
