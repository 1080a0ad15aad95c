"""BERT4Rec: bidirectional Transformer trained on masked items (Sun et al., CIKM 2019).

Item embeddings with one extra `[mask]` token (id `vocab_sizes[0]`, after every real item)
plus learned absolute positions, LayerNorm and dropout, then `num_layers` post-LayerNorm
Transformer layers (BERT's: multi-head self-attention over every non-padding position, in
both directions, and a GELU feed-forward network of width `ffn_multiplier * D`), then BERT's
output transform (dense, GELU, LayerNorm). Items are scored by dot product with the input
embeddings; the returned item table has `vocab_sizes[0]` rows, so `[mask]` is never a
candidate. Only the item id field is used.

Training (`training_loss`): the row's item sequence `s = concat(inputs[:, 1:, 0], latest
target)` (`L` items, left-padded; for `seq2seq` windows without overlap it equals
`targets`; a batch narrower than `max_len` keeps `inputs[:, 0]` too, as inference does) has
each real item replaced by `[mask]` with probability `mask_prob`; a row that draws no mask
gets its latest item masked, so every non-empty row trains on at least one position (the
one inference predicts). The loss (`config.train.loss`) is taken at masked
positions only, each predicting the item it hides.

Inference (`__call__`): `[mask]` is appended and, when the input is `max_len` wide, its
oldest behavior dropped, so the model reads at most the `max_len` positions of training, and
the state at that last position, `[B, 1, D]`, scores the next item. A full window's
`inputs[:, 0]` is therefore ignored.

Differences from the reference code: no output bias per item (the model contract scores
`hidden @ item_table.T`); the forced mask on the latest item replaces the reference's extra
"mask only the last item" training copies; masking draws from the 'negatives' RNG stream.
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from pmix_jax import losses
from pmix_jax.errors import ConfigError
from pmix_jax.models import register
from pmix_jax.models.layers import Dropout
# Given a two-way padding mask here (SASRec gives it a causal one).
from pmix_jax.models.sasrec import MaskedSelfAttention


def mask_items(key: jax.Array, sequence: jax.Array, mask_prob: float,
               mask_id: int) -> tuple[jax.Array, jax.Array]:
  """Cloze masking of `sequence` `[B, L]` item ids (0 = padding).

  Each real item becomes `mask_id` with probability `mask_prob`; in a row with real items
  but no draw, its latest real item is masked. Returns `(masked [B, L], labels [B, L])`:
  `labels` holds the original item at masked positions and 0 elsewhere.
  """
  real = sequence > 0
  drawn = jax.random.bernoulli(key, mask_prob, sequence.shape) & real
  # The latest real item: real, with no real item after it.
  latest = real & (jnp.cumsum(real[:, ::-1], axis=1)[:, ::-1] == 1)
  masked = drawn | (latest & ~drawn.any(axis=1, keepdims=True))
  return (jnp.where(masked, mask_id, sequence).astype(sequence.dtype),
          jnp.where(masked, sequence, 0).astype(sequence.dtype))


class TransformerLayer(nn.Module):
  """A post-LayerNorm Transformer encoder layer with a GELU feed-forward network (BERT's)."""
  num_heads: int
  dropout: float
  ffn_multiplier: int

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, *, train: bool) -> jax.Array:
    """`x` `[B, L, D]`, `mask` broadcastable to `[B, 1, L, L]` (True = may attend)."""
    dim = x.shape[-1]
    drop = lambda y: Dropout(self.dropout)(y, deterministic=not train)
    attended = MaskedSelfAttention(self.num_heads, self.dropout, name='attention')(
        x, mask, train=train)
    x = nn.LayerNorm(name='attention_norm')(x + drop(attended))
    inner = nn.gelu(nn.Dense(self.ffn_multiplier * dim, name='ffn_in')(x.reshape(-1, dim)))
    out = nn.Dense(dim, name='ffn_out')(inner).reshape(x.shape)
    return nn.LayerNorm(name='ffn_norm')(x + drop(out))


@register('bert4rec')
class BERT4Rec(nn.Module):
  vocab_sizes: tuple[int, ...]
  max_len: int
  hidden: int = 64
  dropout: float = 0.2
  num_layers: int = 2
  num_heads: int = 2
  mask_prob: float = 0.2
  ffn_multiplier: int = 4  # Feed-forward width / hidden (BERT's 4).

  causal: ClassVar[bool] = False

  @property
  def mask_id(self) -> int:
    return self.vocab_sizes[0]

  def _check_config(self) -> None:
    if not 0.0 < self.mask_prob <= 1.0:
      raise ConfigError(f'bert4rec mask_prob must lie in (0, 1], not {self.mask_prob}')
    if self.num_heads < 1 or self.hidden % self.num_heads:
      raise ConfigError(f'bert4rec hidden ({self.hidden}) must be a multiple of num_heads '
                        f'({self.num_heads})')
    if self.num_layers < 1 or self.ffn_multiplier < 1:
      raise ConfigError('bert4rec num_layers and ffn_multiplier must be at least 1')

  @nn.compact
  def encode(self, items: jax.Array, *, train: bool,
             last_only: bool) -> tuple[jax.Array, jax.Array]:
    """`items` `[B, L]` (ids, `mask_id` = [mask]) -> hidden `[B, L or 1, D]`, table `[V, D]`."""
    self._check_config()
    length = items.shape[1]
    embed = nn.Embed(self.vocab_sizes[0] + 1, self.hidden,
                     embedding_init=nn.initializers.normal(0.02), name='item_embed')
    positions = self.param('position_embed', nn.initializers.normal(0.02),
                           (self.max_len, self.hidden))
    valid = items > 0
    x = nn.LayerNorm(name='embed_norm')(embed(items) + positions[-length:])
    x = Dropout(self.dropout)(x, deterministic=not train) * valid[..., None]
    mask = valid[:, None, None, :]  # Every position attends to every non-padding one.
    for i in range(self.num_layers):
      x = TransformerLayer(self.num_heads, self.dropout, self.ffn_multiplier,
                           name=f'layer_{i}')(x, mask, train=train) * valid[..., None]
    if last_only:
      x = x[:, -1:]
    # BERT's output transform before the dot product with the item embeddings.
    shape = x.shape
    x = nn.gelu(nn.Dense(self.hidden, name='output_dense')(x.reshape(-1, self.hidden)))
    x = nn.LayerNorm(name='output_norm')(x).reshape(shape)
    return x, embed.embedding[:self.vocab_sizes[0]]

  def __call__(self, inputs: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
    """`inputs` `[B, L, F]` -> hidden `[B, 1, D]` (at an appended [mask]), table `[V, D]`."""
    items = jnp.asarray(inputs[..., 0])
    query = jnp.full((items.shape[0], 1), self.mask_id, items.dtype)
    return self.encode(self.append(items, query), train=train, last_only=True)

  def append(self, items: jax.Array, latest: jax.Array) -> jax.Array:
    """`items` `[B, L]` with `latest` `[B, 1]` appended, at most `max_len` wide: the oldest
    column goes only if the window is full, so a narrower batch (one cut by
    `length_buckets`) drops nothing that a max_len-wide one would keep."""
    width = min(items.shape[1] + 1, self.max_len)
    return jnp.concatenate([items, latest.astype(items.dtype)], axis=1)[:, -width:]

  def masked_sequence(self, batch: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """The batch's item sequences, masked: `(masked [B, L], labels [B, L])` (see module doc).

    Draws from the 'negatives' RNG stream (the first draw of `training_loss`).
    """
    inputs, targets = jnp.asarray(batch['inputs']), jnp.asarray(batch['targets'])
    latest = targets[:, -1] if targets.ndim == 2 else targets
    sequence = self.append(inputs[..., 0], latest[:, None])  # As at inference.
    return mask_items(self.make_rng('negatives'), sequence, self.mask_prob, self.mask_id)

  def training_loss(self, batch: dict[str, jax.Array], *, loss: str,
                    num_negatives: int) -> jax.Array:
    """`config.train.loss` at the masked positions of `batch` (prefix or seq2seq rows)."""
    masked, labels = self.masked_sequence(batch)
    hidden, table = self.encode(masked, train=True, last_only=False)
    return losses.LOSSES[loss](hidden, table, labels, self.make_rng('negatives'),
                               num_negatives)
