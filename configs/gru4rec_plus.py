"""GRU4Rec+ (the AutoMLP table's GRU4Rec with item features; RecBole's GRU4RecF).

GRU4Rec with every side field of a behavior (config.data.features) embedded as well. By
default, RecBole's GRU4RecF: a second GRU reads the concatenated feature embeddings and the
two GRUs' outputs are concatenated and projected to D (the parallel architecture of Hidasi
et al., RecSys 2016, which AutoMLP describes). `fusion='early'` instead concatenates the item
and feature embeddings, projects them to D and runs one GRU.

Defaults from RecBole's `GRU4RecF.yaml`: embedding 64, GRU state 128, one layer, dropout 0.3.
"""

import ml_collections

from configs import gru4rec


def get_config() -> ml_collections.ConfigDict:
  config = gru4rec.get_config()  # Locked: values change, keys cannot be added.
  config.model.use_features = True
  config.model.fusion = 'late'  # 'late' (GRU4RecF, two GRUs) | 'early' (one GRU).
  return config
