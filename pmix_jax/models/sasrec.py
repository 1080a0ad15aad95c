"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018).

Item embeddings (scaled by sqrt(D), as the reference code) plus learned absolute positions,
then `num_layers` blocks of causal self-attention and a position-wise feed-forward network,
with padding positions zeroed after every block (the reference's timeline mask). The output
at position t sees only behaviors <= t. `pre_norm=True` normalises the input of each
sub-layer (the reference code normalises the attention query and the FFN input), False gives
the post-LayerNorm Transformer. Only the item id field is used.
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from pmix_jax.models import register
from pmix_jax.models.layers import Dropout


class MaskedSelfAttention(nn.Module):
  """Multi-head self-attention where `mask` allows (causal in SASRec, two-way in BERT4Rec)."""
  num_heads: int
  dropout: float

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, *, train: bool) -> jax.Array:
    """`x` `[B, L, D]`, `mask` `[B, 1, L, L]` (True = may attend) -> `[B, L, D]`."""
    batch, length, dim = x.shape
    head_dim = dim // self.num_heads
    # Projections as 2-D products, which XLA's CPU dot runs much faster than 3-D ones.
    qkv = nn.Dense(3 * dim, name='qkv')(x.reshape(-1, dim))
    qkv = qkv.reshape(batch, length, 3, self.num_heads, head_dim)
    query, key, value = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    logits = jnp.einsum('bqhk,bvhk->bhqv', query, key) / jnp.sqrt(head_dim).astype(x.dtype)
    weights = jax.nn.softmax(jnp.where(mask, logits, -1e9), axis=-1)
    weights = Dropout(self.dropout)(weights, deterministic=not train)
    out = jnp.einsum('bhqv,bvhk->bqhk', weights, value).reshape(-1, dim)
    return nn.Dense(dim, name='out')(out).reshape(x.shape)


class SASRecBlock(nn.Module):
  num_heads: int
  dropout: float
  pre_norm: bool

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, *, train: bool) -> jax.Array:
    """`x` `[B, L, D]`, `mask` `[B, 1, L, L]` -> `[B, L, D]`."""
    dim = x.shape[-1]
    drop = lambda y: Dropout(self.dropout)(y, deterministic=not train)
    attention = lambda y: drop(MaskedSelfAttention(self.num_heads, self.dropout,
                                                   name='attention')(y, mask, train=train))
    feed_forward = lambda y: drop(nn.Dense(dim, name='ffn_out')(
        drop(nn.relu(nn.Dense(dim, name='ffn_in')(y.reshape(-1, dim))))).reshape(y.shape))
    if self.pre_norm:
      x = x + attention(nn.LayerNorm(name='attention_norm')(x))
      return x + feed_forward(nn.LayerNorm(name='ffn_norm')(x))
    x = nn.LayerNorm(name='attention_norm')(x + attention(x))
    return nn.LayerNorm(name='ffn_norm')(x + feed_forward(x))


@register('sasrec')
class SASRec(nn.Module):
  vocab_sizes: tuple[int, ...]
  max_len: int
  hidden: int = 64
  dropout: float = 0.2
  num_layers: int = 2
  num_heads: int = 1
  pre_norm: bool = True

  causal: ClassVar[bool] = True

  @nn.compact
  def __call__(self, inputs: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
    """`inputs` `[B, L, F]` -> hidden `[B, L, D]`, item table `[V, D]`."""
    items = inputs[..., 0]
    length = items.shape[1]
    embed = nn.Embed(self.vocab_sizes[0], self.hidden,
                     embedding_init=nn.initializers.normal(0.02), name='item_embed')
    positions = self.param('position_embed', nn.initializers.normal(0.02),
                           (self.max_len, self.hidden))
    valid = (items > 0)[..., None]
    x = embed(items) * jnp.sqrt(self.hidden).astype(jnp.float32) + positions[-length:]
    x = Dropout(self.dropout)(x, deterministic=not train) * valid
    mask = nn.combine_masks(nn.make_attention_mask(items > 0, items > 0),
                            nn.make_causal_mask(items))
    for i in range(self.num_layers):
      x = SASRecBlock(self.num_heads, self.dropout, self.pre_norm, name=f'block_{i}')(
          x, mask, train=train) * valid
    if self.pre_norm:
      x = nn.LayerNorm(name='final_norm')(x)
    return x, embed.embedding
