"""ComiRec-SA (Cen et al., KDD 2020): see `pmix_jax/models/comirec.py`. The official
code's settings (THUDM/ComiRec, its Taobao setting where the datasets differ): d = 64,
K = 4 attention heads (interests) over a hidden layer of 4d, learned positions in the
attention's input, history of 50, batch 256, Adam lr 1e-3, no dropout and no gradient
clipping.

Loss and training: as `configs/comirec_dr.py`, from which the shared settings come.
"""

import ml_collections

from configs import comirec_dr


def get_config() -> ml_collections.ConfigDict:
  config = comirec_dr.shared('comirec_sa')
  config.model.add_positions = True  # The code's add_pos.
  config.lock()
  return config
