"""NextItNet (Yuan et al., WSDM 2019), trained on every position as the paper's generative
objective (RecBole trains it on the last position only).

Defaults from RecBole's `NextItNet.yaml`: embedding (and residual channels) 64, kernel width
3, `dilations=(1, 4)` repeated 5 times, i.e. 10 residual blocks whose two convolutions
dilate by 1, 2, 4, 8, 1, 2, ... (the paper's "1, 2, 4, 8" stacks), no dropout. RecBole's
L2 penalty (reg_weight 1e-5) is not applied; `config.train.optimizer='adamw'` with
`weight_decay` is the nearest setting.
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
  config = base.get_config()
  config.model.name = 'nextitnet'
  config.model.dropout = 0.0  # RecBole's NextItNet has no dropout.
  config.model.kernel_size = 3
  config.model.dilations = (1, 4)  # Each block dilates by d, then 2d.
  config.model.num_blocks = 5  # RecBole's block_num: repetitions of `dilations`.
  config.train.targets = 'seq2seq'
  # As configs/sasrec.py: 32 rows of up to max_len targets a step. Not tuned for NextItNet.
  config.train.batch_size = 32
  config.lock()
  return config
