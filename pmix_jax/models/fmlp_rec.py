"""FMLP-Rec: filter-enhanced MLP for sequential recommendation (Zhou et al., WWW 2022).

Item embeddings plus learned absolute positions, LayerNorm and dropout, then `num_layers`
blocks of
- a *learnable filter layer*: the sequence is taken to the frequency domain along the
  sequence axis (`rfft`, orthonormal), every frequency and channel is multiplied by a
  learnable complex weight `W` `[L // 2 + 1, D]` (stored as its real and imaginary parts,
  initialised N(0, 0.02) as in the reference code), and taken back (`irfft(n=L)`); then
  dropout, residual and LayerNorm. With orthonormal transforms both ways this is a circular
  convolution of each channel with the kernel `irfft(W)` over the whole window;
- a point-wise feed-forward network `D -> 4D -> D` (exact GELU), dropout, residual and
  LayerNorm.
Only the item id field is used; items are scored against the input item embeddings.

Not causal. The filter's circular convolution gives every position a view of every other,
later ones included, so the state at position t already sees the item it should predict
(the input at t + 1): a loss at every position (`train.targets = 'seq2seq'`, SASRec's) would
put each target in its own input and teach the model to copy it. We declare
`causal = False`, return the state at the last position only (`T = 1`) and train with
`train.targets = 'prefix'`: one row per target, predicted from its own past. This is also
what the released code does (Woeee/FMLP-Rec, commit f3c4285: `datasets.py` makes a row of
every prefix, `trainers.py` takes the loss at `seq_out[:, -1]`; commented-out lines there
suggest an earlier per-position loss). A port that trains it like SASRec on every position
leaks the targets.

Padding (sequences are left-padded with item id 0). With `mask_padding=True` (default) a
padded position is zero: it gets neither an item nor a position embedding, and it is zeroed
again after every block (as SASRec's timeline mask), so every filter convolves the user's
behaviors only, not position embeddings or the previous block's LayerNorm and feed-forward
biases at empty positions. This departs from the reference code, which adds position
embeddings at padded positions and lets them through the filters unmasked;
`mask_padding=False` does that (in a 2-epoch run on the tiny synthetic data the two scored
alike). Inputs shorter than `max_len` are left-padded to it (the filter is defined on
`max_len` points); longer ones are an error.

Other differences from the reference: the loss is the package's (`config.train.loss`,
full softmax by default; the reference uses binary cross-entropy with one negative per
row). As in the reference: LayerNorm epsilon 1e-12, no dropout inside the feed-forward
network, item embeddings not scaled by sqrt(D), and N(0, 0.02) initial embeddings.

Shapes: inputs `[B, L, F]` -> embeddings `[B, L, D]` -> hidden `[B, 1, D]`, item table
`[V, D]`. The filter runs on the batch-major layout (the FFT's axis), the feed-forward
network as 2-D matrix products.
"""

from __future__ import annotations

import functools
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from pmix_jax.errors import ConfigError
from pmix_jax.models import register
from pmix_jax.models.layers import Dropout

# The reference's: GELU is the exact (erf) one, not Flax's default tanh approximation.
ACTIVATIONS = dict(gelu=functools.partial(nn.gelu, approximate=False), relu=nn.relu,
                   swish=nn.swish)
LAYER_NORM_EPSILON = 1e-12  # The reference code's.


class GlobalFilter(nn.Module):
  """`irfft(rfft(x) * W, n=L)` along axis 1, orthonormal: `[B, L, D] -> [B, L, D]`."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    length, dim = x.shape[1], x.shape[2]
    init = nn.initializers.normal(0.02)
    real = self.param('filter_real', init, (length // 2 + 1, dim))
    imag = self.param('filter_imag', init, (length // 2 + 1, dim))
    spectrum = jnp.fft.rfft(x, axis=1, norm='ortho') * jax.lax.complex(real, imag)
    return jnp.fft.irfft(spectrum, n=length, axis=1, norm='ortho').astype(x.dtype)


class FilterBlock(nn.Module):
  """The filter layer then the feed-forward layer, each with dropout, residual and norm."""
  dropout: float
  activation: str

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """`x` `[B, L, D]` -> `[B, L, D]`."""
    dim = x.shape[-1]
    drop = lambda y: Dropout(self.dropout)(y, deterministic=not train)
    norm = lambda name: nn.LayerNorm(epsilon=LAYER_NORM_EPSILON, name=name)
    x = norm('filter_norm')(x + drop(GlobalFilter(name='filter')(x)))
    flat = x.reshape(-1, dim)  # 2-D products: XLA's CPU dot is slower on 3-D ones.
    h = ACTIVATIONS[self.activation](nn.Dense(4 * dim, name='ffn_in')(flat))
    h = nn.Dense(dim, name='ffn_out')(h)  # The reference has no dropout between the two.
    return norm('ffn_norm')(flat + drop(h)).reshape(x.shape)


@register('fmlp_rec')
class FMLPRec(nn.Module):
  vocab_sizes: tuple[int, ...]
  max_len: int
  hidden: int = 64
  dropout: float = 0.5
  num_layers: int = 2
  activation: str = 'gelu'  # 'gelu' | 'relu' | 'swish', the reference's choices.
  mask_padding: bool = True  # False: the reference's unmasked padding (see the docstring).

  causal: ClassVar[bool] = False

  def _check_config(self, length: int) -> None:
    if self.num_layers < 1:
      raise ConfigError(f'fmlp_rec needs num_layers >= 1, not {self.num_layers}')
    if self.activation not in ACTIVATIONS:
      raise ConfigError(f'fmlp_rec activation must be one of {sorted(ACTIVATIONS)}, not '
                        f'{self.activation!r}')
    if not 0.0 <= self.dropout < 1.0:
      raise ConfigError(f'fmlp_rec dropout must lie in [0, 1), not {self.dropout}')
    if length > self.max_len:
      raise ConfigError(f'fmlp_rec got sequences of length {length} > max_len {self.max_len}')

  @nn.compact
  def __call__(self, inputs: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
    """`inputs` `[B, L, F]` -> hidden `[B, 1, D]`, item table `[V, D]`."""
    self._check_config(inputs.shape[1])
    items = inputs[..., 0]
    items = jnp.pad(items, [(0, 0), (self.max_len - items.shape[1], 0)])  # Left padding.
    embed = nn.Embed(self.vocab_sizes[0], self.hidden,
                     embedding_init=nn.initializers.normal(0.02), name='item_embed')
    positions = self.param('position_embed', nn.initializers.normal(0.02),
                           (self.max_len, self.hidden))
    is_item = (items > 0)[..., None]
    valid = is_item if self.mask_padding else jnp.ones_like(is_item)
    # Item id 0 embeds to zero either way (the reference's `padding_idx=0`).
    x = nn.LayerNorm(epsilon=LAYER_NORM_EPSILON, name='input_norm')(
        embed(items) * is_item + positions)
    x = Dropout(self.dropout)(x, deterministic=not train) * valid
    for i in range(self.num_layers):
      x = FilterBlock(self.dropout, self.activation, name=f'block_{i}')(x, train=train) * valid
    return x[:, -1:], embed.embedding
