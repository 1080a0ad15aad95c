"""Pyramid Mixer (arXiv 2506.16942, SIGIR 2025): multi-dimensional, multi-period interests.

The paper has no public code; this follows its Section 3 as reconstructed in
`shared/papers/NOTES.md` section 1. A behavior is F embedded feature fields (item id, action,
side information), so a user sequence is `[B, L, F, D]`; we flatten each behavior to
`C = F * D` channels, `X` `[B, L, C]`.

One *mixer layer* (Figure 2):
- cross-behavior mixer, Eq. (1) along the sequence axis (token mixing, for every channel):
  `O_b = X + W2 σ(W1 LN(X))`, the MLP acting on the L behaviors;
- cross-feature mixer, Eq. (1) on the transposed sequence: the MLP acts on the C channels of
  each behavior, crossing its feature fields: `O_f = X + (W2 σ(W1 LN(X)ᵀ))ᵀ`;
- low rank: W1 `[r, n]` projects the n positions (or features) onto r latent interests and
  W2 `[n, r]` restores n for the residual, r << n; the two mixers have unequal ranks
  (`behavior_rank`, `feature_rank`). `low_rank=False` gives MLP-Mixer's full-rank MLPs of
  width `mlp_ratio * n`, the paper's efficiency baseline;
- adaptive fusion, Eq. (2): `g = sigmoid(Linear(X))`, `O = g ⊙ O_b + (1 - g) ⊙ O_f`, with
  one gate value per behavior and feature field (shared by the field's D channels).

Between levels, *dynamic interest period scaling* is a strided depthwise 1-D convolution
over the sequence axis, `L_l -> L_{l+1} < L_l`, aligned to the most recent behavior. The
prediction layer reads every level's state after its latest behavior (short to long
periods), concatenated and projected to D, and scores items by dot product with the item
embeddings (shared with the input).

Shapes: inputs `[B, L, F]` ids -> embeddings `[L, B, F, D]` -> per level `[L_l, B, F, D]`
-> user state `[B, D]`. Inside, tensors are sequence-major so that both mixers are plain
matrix products on CPU and accelerators alike.

Where the paper is silent we chose, and say so: depthwise convolution (the mixers already
mix channels, and a full C x C kernel would cost more than both mixers), a per-field gate,
the latest position as each level's read-out.

Ablation switches: `cross_behavior`, `cross_feature`, `low_rank`, `fusion` ('gate' or 'sum':
`O = O_b + O_f`), and `kernel_sizes`/`strides` (empty: a single level, no cross-period).
"""

from __future__ import annotations

from typing import Callable, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pmix_jax.errors import ConfigError
from pmix_jax.models import register
from pmix_jax.models.layers import Dropout, left_pad

ACTIVATIONS = dict(gelu=nn.gelu, swish=nn.swish)


class MixerMlp(nn.Module):
  """Eq. (1) without the residual, `W2 σ(W1 x)` on the last axis: `[..., n] -> [..., n]`.

  `hidden` is the width between W1 and W2: the rank r of the low-rank mixer (W1 projects
  the n inputs onto r latent interests, W2 restores n), or ratio * n for a full-rank one.
  """
  hidden: int
  activation: str
  dropout: float

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    flat = x.reshape(-1, x.shape[-1])  # 2-D products, as in TokenMixerMlp.
    h = ACTIVATIONS[self.activation](nn.Dense(self.hidden, name='w1')(flat))
    h = Dropout(self.dropout)(h, deterministic=not train)
    return nn.Dense(x.shape[-1], name='w2')(h).reshape(x.shape)


class TokenMixerMlp(nn.Module):
  """Eq. (1) along the leading sequence axis: `[n, B, C] -> [n, B, C]`.

  With the sequence axis leading, both products are plain matrix multiplications
  (`[h, n] @ [n, B * C]`), with no transposes.
  """
  hidden: int
  activation: str
  dropout: float

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    length = x.shape[0]
    init = nn.initializers.lecun_normal(in_axis=-1, out_axis=-2)  # Weights are [out, in].
    w1 = self.param('w1', init, (self.hidden, length))
    w2 = self.param('w2', init, (length, self.hidden))
    # Plain 2-D products: XLA's CPU dot is several times slower on the 3-D einsum form.
    h = w1 @ x.reshape(length, -1) + self.param('b1', nn.initializers.zeros, (self.hidden, 1))
    h = Dropout(self.dropout)(ACTIVATIONS[self.activation](h), deterministic=not train)
    y = w2 @ h + self.param('b2', nn.initializers.zeros, (length, 1))
    return y.reshape(x.shape)


class MixerLayer(nn.Module):
  """Cross-behavior and cross-feature mixers fused by the self-gate.

  `x` `[L, B, F, D]` (sequence-major) -> `[L, B, F, D]`. `behavior_hidden` and
  `feature_hidden` map the mixed axis length (L, resp. F * D) to the MLP width.
  """
  behavior_hidden: Callable[[int], int]
  feature_hidden: Callable[[int], int]
  activation: str
  dropout: float
  cross_behavior: bool
  cross_feature: bool
  fusion: str

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    length, batch, num_fields, dim = x.shape
    flat = x.reshape(length, batch, num_fields * dim)  # [L, B, C]
    # Both mixers read the same normalised input; each returns its update, `O = X + Y`.
    normed = nn.LayerNorm(name='norm')(flat.reshape(-1, num_fields * dim)).reshape(flat.shape)
    drop = lambda y: Dropout(self.dropout)(y, deterministic=not train)
    updates = []
    if self.cross_behavior:  # Eq. (1) over the L behaviors, for every channel.
      updates.append(drop(TokenMixerMlp(self.behavior_hidden(length), self.activation,
                                        self.dropout, name='behavior_mixer')(normed,
                                                                            train=train)))
    if self.cross_feature:  # Eq. (1) over the C = F * D features of every behavior.
      updates.append(drop(MixerMlp(self.feature_hidden(num_fields * dim), self.activation,
                                   self.dropout, name='feature_mixer')(normed, train=train)))
    if len(updates) == 1:
      update = updates[0]
    elif self.fusion == 'sum':  # O_b + O_f, counting the residual once.
      update = updates[0] + updates[1]
    else:  # Eq. (2), g ⊙ O_b + (1 - g) ⊙ O_f, one gate per behavior and field.
      gate = nn.sigmoid(nn.Dense(num_fields, name='fusion_gate')(
          flat.reshape(-1, num_fields * dim))).reshape(length, batch, num_fields, 1)
      behavior, feature = (u.reshape(x.shape) for u in updates)
      return x + feature + gate * (behavior - feature)  # gate [L, B, F, 1]
    return x + update.reshape(x.shape)


class PeriodScaling(nn.Module):
  """Strided depthwise convolution over the sequence axis, `[L, B, F, D] -> [L', B, F, D]`.

  Each channel learns its own filter over `kernel_size` adjacent behaviors (the mixers do
  the channel mixing). Left-padded so the last window ends on the most recent behavior:
  `L' = max(1, ceil((L - kernel_size) / stride) + 1)`. Written as a sum of strided slices,
  which XLA compiles to fused elementwise code; its depthwise convolution is many times
  slower on CPU.
  """
  kernel_size: int
  stride: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    length = x.shape[0]
    pad = max(self.kernel_size - length, (self.kernel_size - length) % self.stride)
    out_length = (length + pad - self.kernel_size) // self.stride + 1
    kernel = self.param('kernel', nn.initializers.lecun_normal(in_axis=0, out_axis=()),
                        (self.kernel_size, 1, *x.shape[2:]))
    bias = self.param('bias', nn.initializers.zeros, x.shape[2:])
    x = jnp.pad(x, [(pad, 0), (0, 0), (0, 0), (0, 0)])
    taps = [x[tap:tap + self.stride * (out_length - 1) + 1:self.stride] * kernel[tap]
            for tap in range(self.kernel_size)]
    return sum(taps) + bias


@register('pyramid_mixer')
class PyramidMixer(nn.Module):
  vocab_sizes: tuple[int, ...]
  max_len: int
  hidden: int = 64
  dropout: float = 0.2
  layers_per_level: int = 1
  kernel_sizes: tuple[int, ...] = (2, 2)
  strides: tuple[int, ...] = (2, 2)
  behavior_rank: int = 16
  feature_rank: int = 32
  low_rank: bool = True
  mlp_ratio: float = 2.0  # Hidden width / axis length of the full-rank (ablation) mixers.
  activation: str = 'gelu'
  cross_behavior: bool = True
  cross_feature: bool = True
  fusion: str = 'gate'

  causal: ClassVar[bool] = False

  def _check_config(self) -> None:
    if not (self.cross_behavior or self.cross_feature):
      raise ConfigError('pyramid_mixer needs cross_behavior or cross_feature (or both)')
    if len(self.kernel_sizes) != len(self.strides):
      raise ConfigError(f'kernel_sizes {self.kernel_sizes} and strides {self.strides} must '
                       'have one entry per level transition')
    if self.fusion not in ('gate', 'sum'):
      raise ConfigError(f"fusion must be 'gate' or 'sum', not {self.fusion!r}")
    if self.activation not in ACTIVATIONS:
      raise ConfigError(f'activation must be one of {sorted(ACTIVATIONS)}')

  @nn.compact
  def __call__(self, inputs: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
    """`inputs` `[B, L, F]` -> hidden `[B, 1, D]`, item table `[V, D]`."""
    self._check_config()
    # All fields share one table (field f's ids offset by the sizes before it), so the
    # embedding of the whole sequence is a single gather.
    offsets = np.cumsum((0,) + self.vocab_sizes[:-1])
    table = self.param('embeddings', nn.initializers.normal(0.02),
                       (sum(self.vocab_sizes), self.hidden))
    # Sequence-major from here on: mixing the leading axis is a plain matrix product. The
    # token-mixing weights are [*, max_len]: a shorter input is left-padded to it.
    inputs = left_pad(inputs, self.max_len, 'pyramid_mixer').transpose(1, 0, 2)
    x = table[inputs + offsets] * (inputs > 0)[..., None]  # [L, B, F, D]; padding is zero.
    x = Dropout(self.dropout)(x, deterministic=not train)
    if self.low_rank:
      behavior_hidden = lambda n: self.behavior_rank
      feature_hidden = lambda n: self.feature_rank
    else:
      behavior_hidden = feature_hidden = lambda n: max(1, round(self.mlp_ratio * n))

    level_states = []
    for level in range(len(self.strides) + 1):
      if level > 0:
        x = PeriodScaling(self.kernel_sizes[level - 1], self.strides[level - 1],
                          name=f'period_scaling_{level}')(x)
      for layer in range(self.layers_per_level):
        x = MixerLayer(behavior_hidden, feature_hidden, self.activation, self.dropout,
                       self.cross_behavior, self.cross_feature, self.fusion,
                       name=f'level_{level}_mixer_{layer}')(x, train=train)
      level_states.append(nn.LayerNorm(name=f'level_{level}_norm')(x[-1].reshape(
          x.shape[1], -1)))

    # Multi-scale prediction layer: every period's latest interest state.
    user = nn.Dense(self.hidden, name='prediction')(jnp.concatenate(level_states, axis=-1))
    return user[:, None], table[:self.vocab_sizes[0]]
