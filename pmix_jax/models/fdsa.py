"""FDSA: feature-level deeper self-attention (Zhang et al., IJCAI 2019).

Two causal self-attention streams over the same behaviors:
- item level: item embeddings (scaled by sqrt(D)) plus learned positions, then `num_layers`
  SASRec blocks;
- feature level: the side fields `1..F-1` of each behavior are embedded (one table per
  field) and combined by vanilla attention over the fields, `a = softmax_f(w2 relu(W1 e_f +
  b1))`, `v = sum_f a_f e_f` (a field whose id is 0, i.e. missing, gets no weight), then
  scaled by sqrt(D), plus the same positions, then `num_layers` SASRec blocks of their own.
The two states at each position are concatenated and projected to D (`Dense`, LayerNorm,
dropout, as RecBole's reading of the paper's fully-connected layer), and items are scored
by dot product with the item embeddings. Both streams are causal, so the output at position
t sees only behaviors <= t and the model trains on every position (`seq2seq`).

FDSA is defined by its feature stream: with no side field (`config.data.features = ()`)
it raises a ConfigError on its first call rather than silently becoming SASRec.

Differences from the paper: the features are whatever per-behavior fields the data offers
(`config.data.features`: e.g. `category`, and also behavior fields such as `action`) rather
than item attributes only; the blocks are this library's SASRec blocks (ReLU FFN of width
D, `pre_norm` option) with padding zeroed after every block.
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pmix_jax.errors import ConfigError
from pmix_jax.models import register
from pmix_jax.models.layers import Dropout
from pmix_jax.models.sasrec import SASRecBlock


class FieldAttention(nn.Module):
  """Vanilla attention over the fields of each behavior: `[N, F, D]` -> `[N, D]`."""

  @nn.compact
  def __call__(self, fields: jax.Array, present: jax.Array) -> jax.Array:
    """`fields` `[N, F, D]` embeddings, `present` `[N, F]` (False = missing, no weight)."""
    num, num_fields, dim = fields.shape
    energy = nn.Dense(1, name='score')(nn.relu(nn.Dense(dim, name='project')(
        fields.reshape(-1, dim)))).reshape(num, num_fields)
    weights = jax.nn.softmax(jnp.where(present, energy, -1e9), axis=-1) * present
    return jnp.einsum('nf,nfd->nd', weights, fields)


@register('fdsa')
class FDSA(nn.Module):
  vocab_sizes: tuple[int, ...]
  max_len: int
  hidden: int = 64
  dropout: float = 0.2
  num_layers: int = 2
  num_heads: int = 1
  pre_norm: bool = True

  causal: ClassVar[bool] = True

  def _check_config(self) -> None:
    if len(self.vocab_sizes) < 2:
      raise ConfigError('fdsa needs at least one side feature field besides the item id '
                        "(its feature-level stream); set config.data.features, e.g. "
                        "\"('category',)\"")
    if self.num_heads < 1 or self.hidden % self.num_heads:
      raise ConfigError(f'fdsa hidden ({self.hidden}) must be a multiple of num_heads '
                        f'({self.num_heads})')
    if self.num_layers < 1:
      raise ConfigError('fdsa num_layers must be at least 1')

  def _stream(self, x: jax.Array, valid: jax.Array, mask: jax.Array, name: str, *,
              train: bool) -> jax.Array:
    x = Dropout(self.dropout)(x, deterministic=not train) * valid
    for i in range(self.num_layers):
      x = SASRecBlock(self.num_heads, self.dropout, self.pre_norm, name=f'{name}_block_{i}')(
          x, mask, train=train) * valid
    if self.pre_norm:
      x = nn.LayerNorm(name=f'{name}_final_norm')(x)
    return x

  @nn.compact
  def __call__(self, inputs: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
    """`inputs` `[B, L, F]` -> hidden `[B, L, D]`, item table `[V, D]`."""
    self._check_config()
    batch, length, _ = inputs.shape
    dim = self.hidden
    scale = jnp.sqrt(dim).astype(jnp.float32)
    items, side = inputs[..., 0], inputs[..., 1:]
    valid = (items > 0)[..., None]
    positions = self.param('position_embed', nn.initializers.normal(0.02),
                           (self.max_len, dim))[-length:]
    mask = nn.combine_masks(nn.make_attention_mask(items > 0, items > 0),
                            nn.make_causal_mask(items))

    embed = nn.Embed(self.vocab_sizes[0], dim, embedding_init=nn.initializers.normal(0.02),
                     name='item_embed')
    item_state = self._stream(embed(items) * scale + positions, valid, mask, 'item',
                              train=train)

    # All side fields share one table (field f's ids offset by the sizes before it): a
    # single gather.
    offsets = np.cumsum((0,) + self.vocab_sizes[1:-1])
    table = self.param('feature_embed', nn.initializers.normal(0.02),
                       (sum(self.vocab_sizes[1:]), dim))
    fields = table[side + offsets].reshape(batch * length, -1, dim)
    behavior = FieldAttention(name='field_attention')(
        fields, (side > 0).reshape(batch * length, -1)).reshape(batch, length, dim)
    feature_state = self._stream(behavior * scale + positions, valid, mask, 'feature',
                                 train=train)

    both = jnp.concatenate([item_state, feature_state], axis=-1).reshape(-1, 2 * dim)
    out = nn.LayerNorm(name='output_norm')(nn.Dense(dim, name='fuse')(both))
    out = Dropout(self.dropout)(out.reshape(batch, length, dim), deterministic=not train)
    return out, embed.embedding
