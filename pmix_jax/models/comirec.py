"""ComiRec: controllable multi-interest framework (Cen et al., "Controllable Multi-Interest
Framework for Recommendation", KDD 2020), its two multi-interest modules, ComiRec-DR
(`comirec_dr`) and ComiRec-SA (`comirec_sa`), from the paper and the official code
(THUDM/ComiRec, TensorFlow) where the paper is silent. One module, `ComiRec`, with the
extractor (`'dr' | 'sa'`) fixed by the registered name: results name their variant, and
each variant takes only its own hyperparameters.

Embedding layer: an item table of width d (`hidden`, the code's embedding and hidden size,
64); the behaviors give `H = [e_1..e_m]` `[B, L, D]` (zero at padding).

ComiRec-DR, dynamic routing (`mgnm.InterestExtractor` with `kind='capsule'`, no BiLSTM
and no projection, which is the code's capsule network):
- a bilinear map per behavior and interest, `ê_{j|i} = W_ij e_i`, `W` `[L, K, D, D]`,
  N(0, 1) (the code's `bilinear_type=2`: one map per *position* of the window and interest,
  as the paper's `W_ij`; MIND shares one S instead);
- routing logits from zero (with K different maps, zero logits still give K different
  interests; `routing_init='random'` starts training from a stop-gradient truncated
  N(0, 1) draw instead), `routing_iterations` (3) of `c_ij = softmax_j(b_ij)` (over the
  interests, 0 at padding), `v_j = squash(Σ_i c_ij ê_{j|i})`, `b_ij += v_j^T ê_{j|i}`,
  the logits computed from `stop_gradient(ê)` as in the code (`mgnm.dynamic_routing`);
- no layer after the capsules (the code's `relu_layer=False`): the K interests are the
  capsules `[B, K, D]`, of norm < 1.

ComiRec-SA, self-attention (the paper's self-attentive method, K heads):
`A = softmax(W_2^T tanh(W_1 (H + P)))^T` over the real behaviors, `W_1` `[D, 4D]` and
`W_2` `[4D, K]` with biases (the code's dense layers), `P` `[L, D]` learned positions added
to the attention's input only (`add_positions`, the code's `add_pos=True`), and the
interests `V_u = A^T H` `[B, K, D]`, weighted sums of the plain item embeddings.

Training (`training_loss`, `train.targets='prefix'`): the interest most aligned with the
target, `v_u = V_u[:, argmax(V_u^T e_t)]` (the paper's hard readout), scored by
`config.train.loss`, by default a sampled softmax as the paper (see the configs). This is
`mind.readout_loss` with the label-aware attention's p = inf: gradients reach the chosen
interest only.

Serving (`score_items`): in the paper each interest retrieves its top-N items and the
aggregation module merges them, `f(u, i) = max_k e_i^T v_u^(k)`, plus λ times a category
diversity term. Here every item is scored by `max_k e_i^T v_u^(k)` `[B, V]`: the
aggregation with λ = 0 (the code's default evaluation: the K lists merged by score), as
`[B, K, V]` logits. `__call__` keeps the model contract: hidden `[B, 1, D]` is the mean
interest, which no evaluation uses. Both readouts are MIND's (`mind.MultiInterest`).

Positions: inputs shorter than `max_len` are left-padded to it, so DR's maps and SA's
positions are counted from the latest behavior; longer inputs are an error. The code
right-pads a short history, counting them from the oldest behavior of its window; the two
agree for histories of `max_len` or more. Not causal: `T = 1`.

Other choices: the item table is Glorot uniform, as the code (std `sqrt(2 / (V + D))`,
0.02 for 4k items; on the synthetic data ComiRec-DR trained slower from N(0, 0.3) or
N(0, 1) tables). Differences from the code: Flax's LeCun-normal dense
kernels and N(0, 0.02) positions (the code: Glorot uniform); `dropout` (none in the code)
on the behavior embeddings; the code samples one random prefix per user per step, the
package trains on every prefix (`prefix` targets) once an epoch.

Shapes: inputs `[B, L, F]` -> H `[B, L, D]` -> (DR) ê `[B, K, L, D]` -> interests
`[B, K, D]` -> scores `[B, V]`; hidden `[B, 1, D]`, item table `[V, D]`.
"""

from __future__ import annotations

import math
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from pmix_jax.errors import ConfigError
from pmix_jax.losses import NEG_INF
from pmix_jax.models import register
from pmix_jax.models.layers import Dropout, left_pad
from pmix_jax.models.mgnm import ROUTING_INITS, InterestExtractor
from pmix_jax.models.mind import ITEM_INIT, MultiInterest, prefix_targets, readout_loss



class SelfAttentiveInterests(nn.Module):
  """ComiRec-SA's K heads: `h` `[N, L, D]`, `valid` `[N, L]` -> interests `[N, K, D]`."""
  num_interests: int
  add_positions: bool

  @nn.compact
  def __call__(self, h: jax.Array, valid: jax.Array) -> jax.Array:
    n, length, dim = h.shape
    x = h
    if self.add_positions:
      x = h + self.param('position_embed', nn.initializers.normal(0.02), (length, dim))
    hidden = jnp.tanh(nn.Dense(4 * dim, name='attention_hidden')(x.reshape(-1, dim)))
    logits = nn.Dense(self.num_interests, name='attention_heads')(hidden)
    logits = logits.reshape(n, length, self.num_interests).transpose(0, 2, 1)  # [N, K, L]
    weights = jax.nn.softmax(jnp.where(valid[:, None, :], logits, NEG_INF), axis=-1)
    self.sow('intermediates', 'attention', weights)
    return jnp.einsum('nkl,nld->nkd', weights, h)


class ComiRec(MultiInterest):
  """The shared framework; `ComiRecDR` and `ComiRecSA` are the registered variants."""
  extractor: ClassVar[str] = ''  # 'dr' | 'sa'

  @property
  def model_name(self) -> str:
    return f'comirec_{self.extractor}'

  def _check_config(self) -> None:
    if self.num_interests < 1:
      raise ConfigError(f'{self.model_name} num_interests must be at least 1, not '
                        f'{self.num_interests}')
    if not 0.0 <= self.dropout < 1.0:
      raise ConfigError(f'{self.model_name} dropout must lie in [0, 1), not {self.dropout}')

  def extract(self, h: jax.Array, valid: jax.Array, *, train: bool) -> jax.Array:
    """The multi-interest module: `h` `[B, L, D]`, `valid` `[B, L]` -> `[B, K, D]`."""
    raise NotImplementedError

  @nn.compact
  def interests(self, inputs: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
    """`inputs` `[B, L, F]` -> interests `V_u` `[B, K, D]`, item table `[V, D]`."""
    self._check_config()
    inputs = left_pad(inputs, self.max_len, self.model_name)
    items = inputs[..., 0]
    valid = items > 0
    table = jnp.asarray(self.param('item_embed', ITEM_INIT,
                                   (self.vocab_sizes[0], self.hidden)))
    h = Dropout(self.dropout)(table[items] * valid[..., None], deterministic=not train)
    return self.extract(h, valid, train=train), table

  def training_loss(self, batch: dict[str, jax.Array], *, loss: str,
                    num_negatives: int) -> jax.Array:
    """`config.train.loss` of the interest most aligned with each target (hard readout)."""
    targets = prefix_targets(batch, self.model_name)
    interests, table = self.interests(batch['inputs'], train=True)
    return readout_loss(interests, table, targets, math.inf, loss,
                        self.make_rng('negatives'), num_negatives)


@register('comirec_dr')
class ComiRecDR(ComiRec):
  routing_iterations: int = 3
  routing_init: str = 'zeros'  # 'zeros' (the code's) | 'random' (training only)

  extractor: ClassVar[str] = 'dr'

  def _check_config(self) -> None:
    super()._check_config()
    if self.routing_iterations < 1:
      raise ConfigError(f'comirec_dr routing_iterations must be at least 1, not '
                        f'{self.routing_iterations}')
    if self.routing_init not in ROUTING_INITS:
      raise ConfigError(f'comirec_dr routing_init must be one of {list(ROUTING_INITS)}, '
                        f'not {self.routing_init!r}')

  def extract(self, h: jax.Array, valid: jax.Array, *, train: bool) -> jax.Array:
    return InterestExtractor(self.num_interests, self.hidden, self.routing_iterations,
                             self.routing_init, use_bilstm=False, kind='capsule',
                             projection=False, name='interests')(h, valid, train=train)


@register('comirec_sa')
class ComiRecSA(ComiRec):
  add_positions: bool = True  # The code's add_pos.

  extractor: ClassVar[str] = 'sa'

  def extract(self, h: jax.Array, valid: jax.Array, *, train: bool) -> jax.Array:
    del train
    return SelfAttentiveInterests(self.num_interests, self.add_positions,
                                  name='interests')(h, valid)
