"""MLP-Mixer (Tolstikhin et al., NeurIPS 2021) on behavior sequences: Pyramid Mixer's baseline.

The "MLP-Mixer" row of Pyramid Mixer's Table 1: the behaviors of a sequence play the image
patches (tokens) and the item embedding the channels. Item id field only, as RecBole-style
baselines use it; items are scored against the input item embeddings.

`num_layers` Mixer blocks, each (pre-norm, as the paper's Figure 1)
- token mixing: `X = X + W2 GELU(W1 LN(X))` with the MLP acting on the L positions, for
  every channel (width `token_mlp_ratio * L`, the paper's D_S);
- channel mixing: `X = X + W2 GELU(W1 LN(X))` with the MLP acting on the D channels of every
  position (width `channel_mlp_ratio * D`, the paper's D_C);
then a final LayerNorm, and the state at the last position is the user state (`[B, 1, D]`).
GELU is Flax's tanh approximation, as in the paper's Flax code. The MLPs are
`pyramid_mixer`'s `TokenMixerMlp` and `MixerMlp` (its full-rank mixers are these).

Choices where the image model does not carry over, and why:
- read-out: the state at the last position, not the paper's global average pooling. Inputs
  are left-padded, so the last position is always the latest behavior, and the token-mixing
  MLP has already pooled the others into it (average pooling would also count the padding);
- no position embeddings, as in the paper: the token-mixing weights are position specific;
- dropout (the paper has none, having pre-trained on 300M images): on the embeddings, after
  each MLP's activation and on each MLP's output, as MLP4Rec's mixers;
- padding: a padded position's embedding is zero (item id 0 embeds to zero); the blocks then
  run over the whole window, so the position-specific token-mixing weights see how much of
  it is empty. Inputs shorter than `max_len` are left-padded to it (the token-mixing weights
  are `[*, max_len]`); longer ones are an error.
Not causal: token mixing reads every position. `T = 1`, trained with `targets = 'prefix'`.

Shapes: inputs `[B, L, F]` -> embeddings `[L, B, D]` (sequence-major, so both MLPs are plain
matrix products, as in `pyramid_mixer`) -> hidden `[B, 1, D]`, item table `[V, D]`.
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from pmix_jax.errors import ConfigError
from pmix_jax.models import register
from pmix_jax.models.layers import Dropout
from pmix_jax.models.pyramid_mixer import MixerMlp, TokenMixerMlp


def mlp_width(ratio: float, n: int) -> int:
  return max(1, round(ratio * n))


class MixerBlock(nn.Module):
  """Token mixing then channel mixing, each pre-norm and residual: `[L, B, D] -> [L, B, D]`.

  `token_hidden` and `channel_hidden` are the widths of the two MLPs (D_S and D_C)."""
  token_hidden: int
  channel_hidden: int
  dropout: float

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    dim = x.shape[-1]
    drop = lambda y: Dropout(self.dropout)(y, deterministic=not train)
    norm = lambda y, name: nn.LayerNorm(name=name)(y.reshape(-1, dim)).reshape(y.shape)
    x = x + drop(TokenMixerMlp(self.token_hidden, 'gelu', self.dropout,
                               name='token_mixer')(norm(x, 'token_norm'), train=train))
    return x + drop(MixerMlp(self.channel_hidden, 'gelu', self.dropout,
                             name='channel_mixer')(norm(x, 'channel_norm'), train=train))


@register('mlp_mixer')
class MLPMixer(nn.Module):
  vocab_sizes: tuple[int, ...]
  max_len: int
  hidden: int = 64
  dropout: float = 0.2
  num_layers: int = 2
  token_mlp_ratio: float = 4.0  # Token-mixing MLP width / L.
  channel_mlp_ratio: float = 4.0  # Channel-mixing MLP width / D.

  causal: ClassVar[bool] = False

  def _check_config(self, length: int) -> None:
    if self.num_layers < 1:
      raise ConfigError(f'mlp_mixer needs num_layers >= 1, not {self.num_layers}')
    if self.token_mlp_ratio <= 0 or self.channel_mlp_ratio <= 0:
      raise ConfigError('mlp_mixer token_mlp_ratio and channel_mlp_ratio must be > 0, not '
                        f'{self.token_mlp_ratio}, {self.channel_mlp_ratio}')
    if not 0.0 <= self.dropout < 1.0:
      raise ConfigError(f'mlp_mixer dropout must lie in [0, 1), not {self.dropout}')
    if length > self.max_len:
      raise ConfigError(f'mlp_mixer got sequences of length {length} > max_len {self.max_len}')

  @nn.compact
  def __call__(self, inputs: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
    """`inputs` `[B, L, F]` -> hidden `[B, 1, D]`, item table `[V, D]`."""
    self._check_config(inputs.shape[1])
    # Sequence-major and left-padded to max_len: `[L, B]`.
    items = jnp.pad(inputs[..., 0].T, [(self.max_len - inputs.shape[1], 0), (0, 0)])
    table = self.param('item_embed', nn.initializers.normal(0.02),
                       (self.vocab_sizes[0], self.hidden))
    x = table[items] * (items > 0)[..., None]  # [L, B, D]; padding is zero.
    x = Dropout(self.dropout)(x, deterministic=not train)
    for i in range(self.num_layers):
      x = MixerBlock(mlp_width(self.token_mlp_ratio, self.max_len),
                     mlp_width(self.channel_mlp_ratio, self.hidden), self.dropout,
                     name=f'block_{i}')(x, train=train)
    return nn.LayerNorm(name='final_norm')(x[-1])[:, None], table
