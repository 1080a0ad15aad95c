"""AutoMLP: automated MLP for sequential recommendation (Li et al., WWW 2023).

No public code; built from the paper (NOTES section 3):
- embedding layer: every field of a behavior (item id, then config.data.features) is looked
  up and the embeddings are fused by one fully connected layer into `x_t` `[D]`;
- long-term interest module: `num_layers` SRSMLP layers over the whole sequence `[L, B, D]`;
  a layer is MLP-Mixer's block (`mlp_mixer.MixerBlock`): the sequence mixer
  `x^d + W2 g(W1 LN(x^d))` over the positions of each channel d (hidden R_s), then the
  channel mixer `x^t + W4 g(W3 LN(x^t))` over the channels of each position t (hidden R_c);
- short-term interest module: the same stack, with weights of its own, over the last k
  behaviors `[k, B, D]`. During the search (`pmix_jax/search.py`) there is one stack per
  candidate k in `short_lengths`, and their outputs at the last position are mixed by
  `softmax(α)` (DARTS' continuous relaxation; α is the parameter `ARCH_PARAM`). After the
  search the model is rebuilt with the chosen k alone, and has no α;
- output layer: `h_T = W_o [x^s_T ; x^l_T] + b_o`, `W_o` `[2D -> D]`, scored against the
  item embeddings.

Choices the paper leaves open, and why:
- R_s (`sequence_hidden`) and R_c (`channel_hidden`) are widths, as in the paper, the same
  for the long module and every short candidate: no candidate gets more capacity than
  another for being longer (with widths proportional to the window, the longest candidates
  learnt fastest and won the search on data where a short window suffices);
- each module ends in a LayerNorm before the output layer (MLP-Mixer's pre-head norm; the
  paper's output equation is garbled in our copy, one reading of which has a LayerNorm);
- dropout on the fused embeddings and in every mixer MLP, as `mlp_mixer`; GELU;
- the loss is the package's (`config.train.loss`). The paper writes a binary cross-entropy
  against sampled negatives (`--config.train.loss=bce`); the AutoMLP table trains every
  model with the same full softmax.
- padding behaviors are zero after the fusion layer (its bias would otherwise make them
  look like a behavior), and the sequence mixers' position-specific weights see how much
  of the window is empty, as in `mlp_mixer`. Inputs shorter than `max_len` are left-padded.
Not causal (the sequence mixers read every position): `T = 1`, `train.targets = 'prefix'`.

Shapes: inputs `[B, L, F]` -> embeddings `[L, B, F, D]` -> fused `[L, B, D]` -> hidden
`[B, 1, D]`, item table `[V, D]`.
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
from pmix_jax.models.mlp_mixer import MixerBlock

ARCH_PARAM = 'short_term_alpha'  # The architecture weights α; `search.py` trains them apart.


class InterestModule(nn.Module):
  """`num_layers` SRSMLP layers then a LayerNorm: `[n, B, D]` -> the last position `[B, D]`."""
  num_layers: int
  sequence_hidden: int
  channel_hidden: int
  dropout: float

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    for i in range(self.num_layers):
      x = MixerBlock(self.sequence_hidden, self.channel_hidden, self.dropout,
                     name=f'layer_{i}')(x, train=train)
    return nn.LayerNorm(name='norm')(x[-1])


@register('automlp')
class AutoMLP(nn.Module):
  vocab_sizes: tuple[int, ...]
  max_len: int
  hidden: int = 64
  dropout: float = 0.2
  num_layers: int = 2
  # The short-term lengths k: the search's candidates K, or the one chosen k.
  short_lengths: tuple[int, ...] = (10,)
  sequence_hidden: int = 64  # R_s, the sequence mixers' width.
  channel_hidden: int = 256  # R_c, the channel mixers' width.
  # False drops the long-term module (an ablation): the short-term state alone is read out.
  long_term: bool = True

  causal: ClassVar[bool] = False

  def _check_config(self, length: int) -> None:
    if self.num_layers < 1:
      raise ConfigError(f'automlp needs num_layers >= 1, not {self.num_layers}')
    if not self.short_lengths:
      raise ConfigError('automlp needs at least one short-term length in short_lengths')
    if len(set(self.short_lengths)) != len(self.short_lengths):
      raise ConfigError(f'automlp short_lengths has repeated values: {self.short_lengths}')
    for k in self.short_lengths:
      if not 1 <= k <= self.max_len:
        raise ConfigError(f'automlp short-term length {k} must lie in [1, max_len = '
                          f'{self.max_len}]')
    if self.sequence_hidden < 1 or self.channel_hidden < 1:
      raise ConfigError('automlp sequence_hidden and channel_hidden must be >= 1')
    if not 0.0 <= self.dropout < 1.0:
      raise ConfigError(f'automlp dropout must lie in [0, 1), not {self.dropout}')
    if length > self.max_len:
      raise ConfigError(f'automlp got sequences of length {length} > max_len {self.max_len}')

  @nn.compact
  def __call__(self, inputs: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
    """`inputs` `[B, L, F]` -> hidden `[B, 1, D]`, item table `[V, D]`."""
    self._check_config(inputs.shape[1])
    num_fields = len(self.vocab_sizes)
    # Sequence-major and left-padded to max_len: `[L, B, F]`.
    ids = jnp.pad(inputs.transpose(1, 0, 2),
                  [(self.max_len - inputs.shape[1], 0), (0, 0), (0, 0)])
    # One table for all fields (field f's ids offset by the sizes before it): one gather.
    offsets = np.cumsum((0,) + self.vocab_sizes[:-1])
    table = self.param('embeddings', nn.initializers.normal(0.02),
                       (sum(self.vocab_sizes), self.hidden))
    embedded = jnp.take(table, ids + offsets, axis=0)  # [L, B, F, D]
    # Embedding layer: the fields fused by a fully connected layer into x_t.
    x = nn.Dense(self.hidden, name='fusion')(embedded.reshape(-1, num_fields * self.hidden))
    x = x.reshape(*ids.shape[:2], self.hidden) * (ids[..., 0] > 0)[..., None]  # [L, B, D]
    x = Dropout(self.dropout)(x, deterministic=not train)

    module = lambda name: InterestModule(self.num_layers, self.sequence_hidden,
                                         self.channel_hidden, self.dropout, name=name)
    shorts = [module(f'short_term_{k}')(x[-k:], train=train) for k in self.short_lengths]
    if len(shorts) == 1:
      short_term = shorts[0]  # x^s_T [B, D]
    else:  # The search's relaxation: Σ_k softmax(α)_k x^s_T(k).
      alpha = self.param(ARCH_PARAM, nn.initializers.zeros, (len(shorts),))
      short_term = jnp.einsum('k,kbd->bd', jax.nn.softmax(alpha), jnp.stack(shorts))
    # Output layer: h_T = W_o [x^s_T ; x^l_T] + b_o.
    states = [short_term]
    if self.long_term:
      states.append(module('long_term')(x, train=train))  # x^l_T [B, D]
    h = nn.Dense(self.hidden, name='output')(jnp.concatenate(states, -1))
    return h[:, None], table[:self.vocab_sizes[0]]
