"""Caser: convolutional sequence embedding (Tang & Wang, WSDM 2018), as RecBole's `Caser`.

The item embeddings of the latest `window` behaviors (the paper's L) form an image
`E` `[B, W, D]`, with zero rows for padding. Two kinds of convolution read it:

- horizontal: for every height h = 1..W, `num_horizontal` filters `F^h` `[h, D]` slide over
  the W - h + 1 windows of h consecutive behaviors (union-level and point-level sequential
  patterns); `c^h_i = ReLU(<F^h, E[i:i+h]> + b)`, max-pooled over i: `o = [max_i c^h_i]_h`
  `[B, W * num_horizontal]`;
- vertical: `num_vertical` filters `F~` `[W]` take weighted sums of the W rows,
  `o~ = [F~_k^T E]_k` `[B, num_vertical * D]` (no activation, as the reference code).

`z = ReLU(W_1 Dropout([o; o~]) + b_1)` `[B, D]`. With a user field (`user_field`, the index
of the `user` feature, i.e. user index + 1), the paper's user embedding P_u joins as in
RecBole: `hidden = ReLU(W_2 [z; P_u] + b_2)`; without one, `hidden = z`. Items are scored by
dot product with the input item embeddings (RecBole; the paper has separate output item
embeddings of width 2D and item biases).

Not causal: returns the state after the last behavior, `[B, 1, D]`, trained on one target
per prefix (the paper's T = 1, as RecBole: no sliding window of T targets).

Every convolution is a 2-D matrix product over the flattened windows.
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from pmix_jax.errors import ConfigError
from pmix_jax.models import register
from pmix_jax.models.layers import Dropout


@register('caser')
class Caser(nn.Module):
  vocab_sizes: tuple[int, ...]
  max_len: int
  hidden: int = 64  # D.
  dropout: float = 0.4  # On the concatenated convolution outputs.
  window: int = 5  # W: the latest behaviors read (the paper's L).
  num_horizontal: int = 16  # Filters of each height 1..W (n_h).
  num_vertical: int = 8  # n_v.
  user_field: int = -1  # Index of the `user` field of the inputs; -1: no user embedding.

  causal: ClassVar[bool] = False

  def _check_config(self) -> None:
    if not 1 <= self.window <= self.max_len:
      raise ConfigError(f'caser window must lie in [1, max_len={self.max_len}] (the model '
                        f'reads the latest `window` behaviors), not {self.window}')
    if self.num_horizontal < 0 or self.num_vertical < 0:
      raise ConfigError('caser num_horizontal and num_vertical must not be negative')
    if self.num_horizontal + self.num_vertical == 0:
      raise ConfigError('caser needs num_horizontal > 0 or num_vertical > 0 (or both)')
    if not 0.0 <= self.dropout < 1.0:
      raise ConfigError(f'caser dropout must lie in [0, 1), not {self.dropout}')
    if self.user_field != -1 and not 1 <= self.user_field < len(self.vocab_sizes):
      raise ConfigError(
          f'caser user_field={self.user_field} is not a side field of the data (fields '
          f'1..{len(self.vocab_sizes) - 1}; -1 for none): add "user" to config.data.features '
          'and give its index (1 + its position there)')

  @nn.compact
  def __call__(self, inputs: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
    """`inputs` `[B, L, F]` -> hidden `[B, 1, D]`, item table `[V, D]`."""
    self._check_config()
    embed_init = nn.initializers.normal(1.0 / self.hidden)  # RecBole's init.
    dense = lambda features, name: nn.Dense(
        features, kernel_init=nn.initializers.xavier_normal(), name=name)  # RecBole's init.
    item_table = self.param('item_embed', embed_init, (self.vocab_sizes[0], self.hidden))
    items = inputs[:, -self.window:, 0]
    if items.shape[1] < self.window:  # A shorter input: pad it like any short sequence.
      items = jnp.pad(items, [(0, 0), (self.window - items.shape[1], 0)])
    batch, width, dim = items.shape[0], self.window, self.hidden
    image = item_table[items] * (items > 0)[..., None]  # [B, W, D], padding rows zero.

    parts = []
    if self.num_vertical:  # o~ = [F~_k^T E]_k: [B * D, W] @ [W, n_v].
      vertical = dense(self.num_vertical, 'vertical')(
          image.transpose(0, 2, 1).reshape(batch * dim, width))
      parts.append(vertical.reshape(batch, dim * self.num_vertical))
    for height in range(1, width + 1) if self.num_horizontal else ():
      positions = width - height + 1
      windows = jnp.concatenate([image[:, i:i + positions] for i in range(height)], axis=-1)
      conv = dense(self.num_horizontal, f'horizontal_{height}')(
          windows.reshape(batch * positions, height * dim))  # [B * (W-h+1), n_h]
      parts.append(nn.relu(conv).reshape(batch, positions, -1).max(axis=1))
    features = Dropout(self.dropout)(jnp.concatenate(parts, axis=-1), deterministic=not train)
    hidden = nn.relu(dense(dim, 'fc')(features))  # z
    if self.user_field != -1:
      # Every real behavior carries the user; padding carries 0, hence the max.
      user = inputs[..., self.user_field].max(axis=1)
      user_embed = self.param('user_embed', embed_init,
                              (self.vocab_sizes[self.user_field], dim))
      hidden = nn.relu(dense(dim, 'fc_user')(jnp.concatenate([hidden, user_embed[user]], -1)))
    return hidden[:, None], item_table
