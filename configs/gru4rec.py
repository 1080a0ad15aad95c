"""GRU4Rec (Hidasi et al., ICLR 2016), as RecBole's GRU4Rec, trained on every position.

Defaults from RecBole's `GRU4Rec.yaml` (the paper tunes per dataset): embedding size 64 (our
`hidden`, base's), GRU state 128, one layer, dropout 0.3 on the item embeddings, full-softmax
cross-entropy (RecBole's loss_type 'CE', base's).
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
  config = base.get_config()
  config.model.name = 'gru4rec'
  config.model.dropout = 0.3  # RecBole.
  config.model.gru_hidden = 128  # RecBole's hidden_size.
  config.model.num_layers = 1  # RecBole; NOTES.md section 4.
  config.model.use_features = False  # True: GRU4Rec+ (configs/gru4rec_plus.py).
  config.model.fusion = 'late'  # Only read with use_features.
  config.train.targets = 'seq2seq'
  # As configs/sasrec.py: 32 rows of up to max_len targets a step. Not tuned for GRU4Rec.
  config.train.batch_size = 32
  config.lock()
  return config
