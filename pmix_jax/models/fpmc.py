"""FPMC: factorising personalised Markov chains (Rendle et al., WWW 2010).

The score of item i after user u's last item l is a matrix-factorisation term plus a
factorised first-order transition term (RecBole's `FPMC`):

  x(u, l, i) = <V^{UI}_u, V^{IU}_i> + <V^{IL}_i, V^{LI}_l>.

In this package's contract (`scores = hidden @ item_table.T`) that is a concatenation:
`hidden_t = [V^{UI}_u ; V^{LI}_{l_t}]` `[2D]` and `item_table_i = [V^{IU}_i ; V^{IL}_i]`.
The state at position t uses the user and the item at t only, so the model is causal and
trains on every position of a window (`seq2seq`). The original trains with the BPR loss
(`config.train.loss='bpr'`, the default of `configs/fpmc.py`).

The user comes from the derived `user` feature field, as for `bpr_mf` (`user_field`).

Shapes: inputs `[B, L, F]` -> hidden `[B, L, 2D]`, item table `[V, 2D]`.
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from pmix_jax.models import register
from pmix_jax.models.bpr_mf import user_ids


@register('fpmc')
class FPMC(nn.Module):
  vocab_sizes: tuple[int, ...]
  max_len: int
  hidden: int = 64
  dropout: float = 0.0  # Unused: kept so that the shared tuning grid applies to every model.
  user_field: int = 1

  causal: ClassVar[bool] = True

  @nn.compact
  def __call__(self, inputs: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
    """`inputs` `[B, L, F]` -> hidden `[B, L, 2D]`, item table `[V, 2D]`."""
    del train
    users = user_ids(inputs, self.vocab_sizes, self.user_field, 'fpmc')
    items = inputs[..., 0]
    num_items = self.vocab_sizes[0]
    init = nn.initializers.xavier_normal()
    user_item = self.param('user_item', init, (self.vocab_sizes[self.user_field],
                                               self.hidden))      # V^{UI}
    item_user = self.param('item_user', init, (num_items, self.hidden))   # V^{IU}
    last_item = self.param('last_item', init, (num_items, self.hidden))   # V^{LI}
    item_last = self.param('item_last', init, (num_items, self.hidden))   # V^{IL}
    valid = (items > 0)[..., None]
    hidden = jnp.concatenate([user_item[users], last_item[items]], axis=-1) * valid
    return hidden, jnp.concatenate([item_user, item_last], axis=-1)
