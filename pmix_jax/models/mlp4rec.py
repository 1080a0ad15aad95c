"""MLP4Rec: a pure MLP architecture for sequential recommendation (Li et al., IJCAI 2022).

Every feature field of a behavior (item id, action, side information) is embedded to D
dims, `X` `[B, L, F, D]`, and mixed in three directions by MLP-Mixer blocks (pre-norm
`X = X + Dropout(W2 Dropout(GELU(W1 LN(X))))`, exact GELU, widths `expansion * n` for an
axis of length n, LayerNorm over D):
- sequence mixer: the MLP acts on the L positions, for every channel of every field;
- channel mixer: on the D channels of every position of every field;
- feature mixer: on the F fields of every position and channel (the "tri-directional"
  fusion: this is where a side field reaches the item field).
One layer is the sequence mixer then the channel mixer (every field), then the feature
mixer, `num_layers` times. The user state is the item field's state at the last position,
LayerNorm'ed; items are scored against the item id embeddings of the input.

Weight sharing, as in the reference code (Li-Muyang/MLP4Rec, `mlp4rec.py`):
- across feature fields: one sequence mixer and one channel mixer serve every field (the
  code's design, recorded in NOTES section 4; F fields cost no more mixer weights than one);
- across layers (`share_layers=True`, default): the reference builds one sequence, one
  channel and one feature mixer and applies them `num_layers` times, so the mixers'
  parameters do not grow with depth (each application still draws its own dropout masks).
  We follow the code here. `share_layers=False` gives every layer its own three mixers (a
  standard stack, for comparison).
So the model holds one sequence, one channel and one feature mixer (each with its
LayerNorm), or `num_layers` of each.

Read-out (`readout`): 'item' (default, the reference's) reads the item field at the last
position, which the feature mixers have already fused with the side fields; 'concat' reads
all F fields there, concatenated and LayerNorm'ed, and projects `F * D -> D`.

Other choices, and differences from the reference:
- no position embedding and no dropout on the embeddings, as the reference (its sequence
  mixer is position specific; it defines an embedding dropout but never applies it);
- padding: sequences are left-padded (the reference's RecBole pads on the right and gathers
  the last valid position; left padding puts the latest behavior at a fixed position). A
  field whose id is 0 embeds to zero, so a padded behavior is zero in every field; the
  blocks then run over the whole window, as in `mlp_mixer`. Inputs shorter than `max_len`
  are left-padded to it; longer ones are an error;
- item id 0 embeds to zero as with the reference's `padding_idx=0`; so do side-field ids 0;
- the loss is the package's (`config.train.loss`); the reference's is cross-entropy too.
Not causal: the sequence mixer reads every position. `T = 1`, `train.targets = 'prefix'`.

Shapes: inputs `[B, L, F]` -> embeddings `[F, L, B, D]` -> hidden `[B, 1, D]`, item table
`[V, D]`. The field-major layout makes all three mixers plain 2-D matrix products: the
sequence mixer runs once per field with the same weights, the feature mixer on the leading
axis, the channel mixer on the last; no transposes between them (XLA's CPU dot is several
times slower on 3-D einsums; a batch-major layout transposing around the feature mixer cost
about 30% more on this CPU).
"""

from __future__ import annotations

import functools
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pmix_jax.errors import ConfigError
from pmix_jax.models import register
from pmix_jax.models.layers import Dropout

AXES = ('sequence', 'channel', 'feature')
gelu = functools.partial(nn.gelu, approximate=False)  # The reference's (PyTorch) exact GELU.
READOUTS = ('item', 'concat')


class AxisMixer(nn.Module):
  """A pre-norm residual MLP along one axis of `x` `[F, L, B, D]`, `x + Dropout(W2
  Dropout(GELU(W1 LN(x))))`, sharing its weights across the other axes (for the sequence
  mixer: across the F fields).

  The module is applied more than once (every layer, with `share_layers`), and a Flax module
  called twice draws the same dropout masks; `call` (the layer index) names the dropout of
  each application, so every layer, like every field, gets masks of its own.
  """
  axis: str  # One of AXES.
  expansion: float
  dropout: float

  @nn.compact
  def __call__(self, x: jax.Array, *, call: int, train: bool) -> jax.Array:
    num_fields, length, _, dim = x.shape
    n = dict(sequence=length, channel=dim, feature=num_fields)[self.axis]
    width = max(1, round(self.expansion * n))
    drop = lambda y, name: Dropout(self.dropout, name=f'{name}_dropout_{call}')(
        y, deterministic=not train)
    normed = nn.LayerNorm(name='norm')(x.reshape(-1, dim))
    if self.axis == 'channel':  # [F * L * B, D] @ [D, width] @ [width, D].
      init = nn.initializers.lecun_normal()
      w1, w2 = self.param('w1', init, (n, width)), self.param('w2', init, (width, n))
      b1 = self.param('b1', nn.initializers.zeros, (width,))
      b2 = self.param('b2', nn.initializers.zeros, (n,))
      h = drop(gelu(normed @ w1 + b1), 'hidden')
      return x + drop(h @ w2 + b2, 'output').reshape(x.shape)
    # The sequence and feature mixers act on a leading axis: weights are [out, in], and the
    # products `[width, n] @ [n, rest]` need no transposes.
    init = nn.initializers.lecun_normal(in_axis=-1, out_axis=-2)
    w1, w2 = self.param('w1', init, (width, n)), self.param('w2', init, (n, width))
    b1 = self.param('b1', nn.initializers.zeros, (width, 1))
    b2 = self.param('b2', nn.initializers.zeros, (n, 1))
    if self.axis == 'sequence':  # The same MLP over the L positions of every field.
      normed = normed.reshape(num_fields, length, -1)
      h = drop(gelu(jnp.stack([w1 @ normed[f] for f in range(num_fields)]) + b1), 'hidden')
      y = jnp.stack([w2 @ h[f] for f in range(num_fields)]) + b2
    else:  # 'feature': over the F fields, the leading axis.
      h = drop(gelu(w1 @ normed.reshape(num_fields, -1) + b1), 'hidden')
      y = w2 @ h + b2
    return x + drop(y, 'output').reshape(x.shape)


@register('mlp4rec')
class MLP4Rec(nn.Module):
  vocab_sizes: tuple[int, ...]
  max_len: int
  hidden: int = 128
  dropout: float = 0.5
  num_layers: int = 4
  expansion: float = 4.0  # Width of every mixer's MLP / the length of the axis it mixes.
  share_layers: bool = True  # The reference's: one set of mixers applied num_layers times.
  readout: str = 'item'  # 'item' (the reference's) | 'concat'.

  causal: ClassVar[bool] = False

  def _check_config(self, length: int) -> None:
    if self.num_layers < 1:
      raise ConfigError(f'mlp4rec needs num_layers >= 1, not {self.num_layers}')
    if self.expansion <= 0:
      raise ConfigError(f'mlp4rec expansion must be > 0, not {self.expansion}')
    if self.readout not in READOUTS:
      raise ConfigError(f'mlp4rec readout must be one of {READOUTS}, not {self.readout!r}')
    if not 0.0 <= self.dropout < 1.0:
      raise ConfigError(f'mlp4rec dropout must lie in [0, 1), not {self.dropout}')
    if length > self.max_len:
      raise ConfigError(f'mlp4rec got sequences of length {length} > max_len {self.max_len}')

  @nn.compact
  def __call__(self, inputs: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
    """`inputs` `[B, L, F]` -> hidden `[B, 1, D]`, item table `[V, D]`."""
    self._check_config(inputs.shape[1])
    # All fields share one table (field f's ids offset by the sizes before it), so the
    # embedding of the whole sequence is a single gather.
    offsets = np.cumsum((0,) + self.vocab_sizes[:-1])[:, None, None]
    table = self.param('embeddings', nn.initializers.normal(0.02),
                       (sum(self.vocab_sizes), self.hidden))
    # Field-major and left-padded to max_len: `[F, L, B]`.
    ids = jnp.pad(inputs.transpose(2, 1, 0), [(0, 0), (self.max_len - inputs.shape[1], 0),
                                               (0, 0)])
    x = table[ids + offsets] * (ids > 0)[..., None]  # [F, L, B, D]; id 0 is zero.

    def mixers(prefix):
      return [AxisMixer(axis, self.expansion, self.dropout, name=f'{prefix}{axis}_mixer')
              for axis in AXES]

    shared = mixers('') if self.share_layers else None
    for layer in range(self.num_layers):
      sequence, channel, feature = shared or mixers(f'layer_{layer}_')
      for mixer in (sequence, channel, feature):
        x = mixer(x, call=layer, train=train)

    if self.readout == 'item':
      user = nn.LayerNorm(name='final_norm')(x[0, -1])
    else:
      last = x[:, -1].transpose(1, 0, 2).reshape(x.shape[2], -1)  # [B, F * D]
      user = nn.Dense(self.hidden, name='readout')(nn.LayerNorm(name='final_norm')(last))
    return user[:, None], table[:self.vocab_sizes[0]]
