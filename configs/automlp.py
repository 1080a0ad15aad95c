"""AutoMLP (Li et al., WWW 2023): long- and short-term MLP mixers, k found by a search.

`python main.py --config=configs/automlp.py --workdir=...` searches the short-term length k
among `model.short_lengths` (DARTS, `pmix_jax/search.py`), then retrains from scratch with
the chosen k; `--config.automlp.search=False --config.automlp.short_length=10` skips the
search. The paper: Adam lr 1e-3, 8 layers best (its Figure on depth), early stopping with
patience 10, item id and features fused by a dense layer.
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
  config = base.get_config()
  config.model.name = 'automlp'
  config.model.num_layers = 2
  config.model.short_lengths = (2, 5, 10, 20, 40)  # The candidates K.
  config.model.sequence_hidden = 64  # R_s.
  config.model.channel_hidden = 256  # R_c.
  config.model.long_term = True  # False: the short-term module alone (an ablation).
  config.eval.patience = 10

  config.automlp = ml_collections.ConfigDict()
  config.automlp.search = True
  # With search=False: the short-term length to train with.
  config.automlp.short_length = 0
  config.automlp.search_epochs = 2
  # 'first': α descends L_val(W, α); 'second': L_val(W - ξ ∇_W L_train(W, α), α).
  config.automlp.order = 'first'
  config.automlp.xi = 0.0  # ξ of the second-order step; 0 means config.train.lr.
  # Added to α's validation objective: length_penalty * E_softmax(α)[k] / max(K). 0 is the
  # paper's search. Candidates at least as long as the interest that matters fit equally
  # well, so without it the choice among them is arbitrary; a small penalty picks the
  # shortest (cheapest) of them.
  config.automlp.length_penalty = 0.0
  # α's optimiser: Adam(arch_lr, betas 0.5/0.999) with weight decay, as DARTS, but a larger
  # step than DARTS' 3e-4: a search of a couple of epochs is far shorter than DARTS' 50.
  config.automlp.arch_lr = 1e-2
  config.automlp.arch_weight_decay = 1e-3
  config.lock()
  return config
