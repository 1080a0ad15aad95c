"""MGNM (Tian et al., SIGIR 2022): see `pmix_jax/models/mgnm.py`. The official code's
defaults (NOTES section 2): d = d' = 16, K = 4 interests, 4 levels (raw embeddings and 3
graph layers), history of 100, Adam lr 1e-3, 50 epochs, 5 negatives per target, L1 and L2
weights 1e-5, no dropout and no gradient clipping.

The code's batch of 256 counts the negatives' rows too (42 targets and their 5 negatives
each); here the batch counts targets: `--config.train.batch_size=42` gives the code's step.

The rows of the paper's Table 3 that our switches allow are variants of this config:
`--config=configs/mgnm.py:without_ugcn` (also `without_l1`, `without_bilstm`,
`without_maxpool`, `scn_bilstm`, `scn_sum_pool`, `scn_self_attention`).

`bilstm_in_routing` places the BiLSTM as the official code does (see the model's doc), not
as Eq. 10 reads. `sampled_softmax` is not the paper's: it trains with the multi-interest
baselines' loss (MIND, ComiRec: a softmax over the target and 10 uniform negatives per row,
shared by the batch) instead of Eq. 17's BCE against 5 negatives, to tell the model from
its loss when it is compared with them. Keep `num_negatives` = 10 x `batch_size` when
changing the batch.
"""

import ml_collections

from configs import base

BATCH_SIZE = 256  # Rows (targets) per step.
VARIANTS = {
    'without_ugcn': dict(model=dict(use_graph=False)),
    'without_l1': dict(model=dict(l1_weight=0.0)),
    'without_bilstm': dict(model=dict(use_bilstm=False)),
    'without_maxpool': dict(model=dict(pooling='sum')),
    'scn_bilstm': dict(model=dict(interest_extractor='bilstm')),
    'scn_sum_pool': dict(model=dict(interest_extractor='sum')),
    'scn_self_attention': dict(model=dict(interest_extractor='self_attention')),
    'sampled_softmax': dict(train=dict(loss='sampled_softmax', num_negatives=10 * BATCH_SIZE)),
    'bilstm_in_routing': dict(model=dict(bilstm_placement='routing')),
}


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  config = base.get_config()
  config.model.name = 'mgnm'
  config.model.hidden = 16  # d, the embedding width.
  config.model.dropout = 0.0
  config.model.user_field = 1  # The derived 'user' field, the first feature below.
  config.model.num_levels = 4  # H^(0..3).
  config.model.num_interests = 4  # K
  config.model.capsule_dim = 16  # d'
  config.model.routing_iterations = 3
  # 'random': routing logits start from a stop-gradient N(0, 1) draw in training, as in the
  # code (zero in evaluation); 'zeros': from zero always.
  config.model.routing_init = 'random'
  # Ablations (Table 3) and the code's variants, all on by the paper's defaults:
  config.model.graph = 'user_aware'  # Eq. 1; 'dot' drops the user term, as the code.
  config.model.use_graph = True  # False: w/o UGCN (the raw embeddings' level only).
  config.model.use_bilstm = True  # False: w/o BiLSTM (Eq. 10).
  # 'eq10': Z + BiLSTM(Z) is routed and pooled; 'routing': the code's, the BiLSTM only on
  # the middle routing iteration's stop-gradient Z (it shapes the couplings).
  config.model.bilstm_placement = 'eq10'
  # 'capsule' (the SCN) | 'bilstm' | 'sum' | 'self_attention': Table 3's SCN -> rows.
  config.model.interest_extractor = 'capsule'
  # Eq. 5's map per position ('per_position', the code's bilinear_type=2) or one per
  # interest shared over positions ('per_interest', ComiRec's bilinear_type=1).
  config.model.bilinear = 'per_position'
  config.model.bilinear_std = 1.0  # Eq. 5's W ~ N(0, σ²), the code's σ.
  config.model.projection = True  # Eq. 11; False is the code's relu_layer=False.
  config.model.pooling = 'max'  # Over levels in evaluation (Eq. 15); 'sum': w/o MaxPool.
  config.model.l1_weight = 1e-5  # θ1 on the adjacency; 0: w/o L1Norm.
  config.model.l2_weight = 1e-5  # θ2 on every parameter.
  config.data.features = ('user',)
  config.data.max_len = 100
  config.train.targets = 'prefix'  # Not causal: one target per row.
  config.train.loss = 'bce'  # Eq. 17 ('sampled_softmax' is the only other it accepts).
  config.train.num_negatives = 5
  config.train.batch_size = BATCH_SIZE
  config.train.num_epochs = 50
  config.train.grad_clip_norm = 0.0
  if variant:
    if variant not in VARIANTS:
      raise ValueError(f'unknown MGNM variant {variant!r}; known: {sorted(VARIANTS)}')
    config.update(VARIANTS[variant])
  config.lock()
  return config
