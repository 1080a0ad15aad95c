"""BPR-MF: matrix factorisation trained with Bayesian personalised ranking.

Rendle et al., "BPR: Bayesian Personalized Ranking from Implicit Feedback", UAI 2009, as
RecBole's `BPR`: the score of item i for user u is `<P_u, Q_i>`, trained with the pairwise
loss `-log σ(<P_u, Q_i> - <P_u, Q_j>)` against sampled items j (`config.train.loss='bpr'`,
`pmix_jax.losses.bpr_loss`). The order of a user's behaviors plays no part.

The user is read from a feature field: the data package derives a `user` field (the user's
index + 1) when `config.data.features` names it, and `user_field` is its index among the
fields (1 when `features=('user',)`). Every position of a sequence carries the same user,
so the state at position t is `P_u` for every t: the model is trivially causal and trains on
every training interaction of a window at once (`seq2seq`).

Shapes: inputs `[B, L, F]` -> hidden `[B, L, D]` (= `P_u` at every real position),
item table `[V, D]`.
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax

from pmix_jax.errors import ConfigError
from pmix_jax.models import register


def user_ids(inputs: jax.Array, vocab_sizes: tuple[int, ...], user_field: int,
             model: str) -> jax.Array:
  """`inputs[..., user_field]` `[B, L]`, after checking that such a field exists."""
  if not 0 < user_field < len(vocab_sizes) or inputs.shape[-1] != len(vocab_sizes):
    raise ConfigError(f"{model} reads the user from feature field {user_field}, but the "
                      f'data has {len(vocab_sizes)} field(s); add \'user\' to '
                      'config.data.features and set config.model.user_field to its index '
                      '(1 if it is the first feature)')
  return inputs[..., user_field]


@register('bpr_mf')
class BPRMF(nn.Module):
  vocab_sizes: tuple[int, ...]
  max_len: int
  hidden: int = 64
  dropout: float = 0.0  # Unused: kept so that the shared tuning grid applies to every model.
  user_field: int = 1

  causal: ClassVar[bool] = True

  @nn.compact
  def __call__(self, inputs: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
    """`inputs` `[B, L, F]` -> hidden `[B, L, D]`, item table `[V, D]`."""
    del train
    users = user_ids(inputs, self.vocab_sizes, self.user_field, 'bpr_mf')
    init = nn.initializers.xavier_normal()  # RecBole's initialisation.
    user_table = self.param('user_embed', init, (self.vocab_sizes[self.user_field],
                                                 self.hidden))
    item_table = self.param('item_embed', init, (self.vocab_sizes[0], self.hidden))
    return user_table[users] * (users > 0)[..., None], item_table
