"""MIMN (Pi et al., KDD 2019): see `pmix_jax/models/mimn.py`. The authors' code
(UIC-Paper/MIMN) and its README's full model: E = 32 (its 16-wide item and category
embeddings; we embed the item alone) for embeddings and memory slots, a GRU controller of
32, 4 memory slots with one read and one write head, the memory utilisation regularisation
and the memory induction unit (top-1 channel), channel attention MLP (80, 40), prediction
MLP (200, 80), no dropout, no L2, Adam lr 1e-3, histories of 100 (its Amazon setting).

Training follows the SURGE-family table (`configs/sli_rec.shared`): a softmax over the
target and 4 uniform negatives, one target per row, 50 epochs; the code trains a click
model on logged clicks and non-clicks instead. Scoring runs the cell's last step, the
channel attention and the MLP for every (row, item): lower `config.model.score_chunk` if
evaluation runs out of memory.
"""

import ml_collections

from configs import sli_rec


def get_config() -> ml_collections.ConfigDict:
  config = sli_rec.shared('mimn', user=False)
  config.model.hidden = 32  # E, the embeddings' and memory slots' width.
  config.model.dropout = 0.0  # On the hidden MLP layers (the code has none).
  config.model.layer_sizes = (200, 80)  # The prediction MLP.
  config.model.embed_l2 = 0.0  # On the embedding rows a batch touches (the code has none).
  config.model.layer_l2 = 0.0  # On every other parameter.
  config.model.att_fcn_layer_sizes = (80, 40)  # The channel attention's MLP.
  config.model.memory_size = 4  # m, memory slots and MIU channels.
  config.model.controller_units = 32  # H, the controller GRU's width.
  config.model.memory_induction = True  # The MIU (the code's --mem_induction 1).
  config.model.induction_top_k = 1  # MIU channels updated per behavior.
  config.model.utilisation_regularisation = True  # The code's --util_reg 1.
  # On the mean over rows of the usage's variance over slots: the code's capacity_loss,
  # 0.001 / (memory_size * batch), with its 4 slots and Amazon batch of 128.
  config.model.utilisation_weight = 0.001 / (4 * 128)
  # (row, item) pairs that score_items runs at once (memory ~ score_chunk * 4 * 80 floats).
  config.model.score_chunk = 1 << 14
  config.data.max_len = 100  # The code's Amazon history length.
  config.lock()
  return config
