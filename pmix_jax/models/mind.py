"""MIND: multi-interest network with dynamic routing (Li et al., "Multi-Interest Network
with Dynamic Routing for Recommendation at Tmall", CIKM 2019), from the paper, with the
choices it leaves open taken from ComiRec's MIND baseline (THUDM/ComiRec, TensorFlow).

Embedding layer: an item table of width d (`hidden`); the behaviors `I_u` give
`e_1..e_m` `[B, L, D]` (zero at padding). The paper also pools the embeddings of an item's
side ids (category, brand) into `e_i` and embeds user profile features `P_u`; here an
item is its id alone (the model contract scores `[V, D]` item embeddings, one per id), and
the user profile is at most the derived `user` field (`user_field`, off by default, see
below).

Multi-interest extractor, behavior-to-interest (B2I) dynamic routing (`routing_iterations`
r, 3): the behaviors are low-level capsules and the K interests (`num_interests`) high-level
ones. B2I differs from capsule routing in three ways:
- one bilinear map S `[D, D]` shared by every behavior and interest: the prediction of
  interest j from behavior i is `S e_i` for every j (the routing logit, Eq. 4, becomes
  `b_ij = u_j^T S e_i`), `z` `[B, K, L, D]`. No bias (the paper's product; ComiRec's
  code adds one);
- the routing logits `b` `[B, K, L]` start random, not from zero: with a shared S, zero
  logits would route every behavior alike and give K equal interests. In training
  (`routing_init='random'`) they are a fresh stop-gradient draw per row, truncated normal
  σ = 1 (ComiRec's code), from the 'dropout' RNG stream. In evaluation, and always with
  `routing_init='fixed'`, they are one draw `[K, max_len]` from a constant key
  (`ROUTING_KEY`), shared by every row and every run: scores are deterministic, and the
  draw is one sample of the distribution trained on (ComiRec's code draws afresh at test
  time; zero logits, MGNM's evaluation choice, would collapse the K interests into one);
- a dynamic number of interests `K'_u = max(1, min(K, log2 |I_u|))`: not implemented,
  every user has K interests (the rule lowers K for users with fewer than 2^K behaviors;
  ComiRec's code, ReChorus and this baseline keep K fixed).
Each of the r iterations couples `w_ij = softmax_j(b_ij)` (over the interests, 0 at
padding), `c_j = squash(Σ_i w_ij S e_i)` and, but for the last, adds `c_j^T S e_i` to
`b_ij`. This is `mgnm.dynamic_routing`, whose logits are computed from `stop_gradient(z)`,
as ComiRec's code does for its MIND (the paper does not say; gradients reach S through the
last iteration's sum).

Interest layers: each capsule c_j, concatenated with the user embedding when `user_field`
names one (the paper's user profile), passes through `relu_layers` layers `ReLU(W x + b)`
of width D, one set of weights shared by the interests, giving the interests
`v_u^1..v_u^K` `[B, K, D]`. The paper has "several ReLU layers" (no count); ComiRec's code
one (Amazon Books) or none (Taobao); default 1.

Label-aware attention (training): the target e_t is the query and the interests the keys
and values, `v_u = V_u softmax(pow(V_u^T e_t, p))` `[B, D]` (`attention_power` p). The
paper's `pow` is undefined for a negative compatibility and a non-integer p, and for even
p would favour a strongly *anti*-aligned interest; we take the odd extension
`sign(s) |s|^p`, equal to the paper's wherever its compatibilities are >= 0, so that, as
the paper says, a larger p gives more weight to the larger dot product. `p = 0` is even
attention (the paper's "p close to 0": `s^0 = 1`), `p = inf` hard attention, the argmax
interest (ComiRec's code and ReChorus' default for MIND, and the default here: MIND then
trains as ComiRec does, and the two differ by their extractors only).

Training (`training_loss`, `train.targets='prefix'`): `config.train.loss` of `v_u` against
the target, `Pr(i|u) = exp(v_u^T e_i) / Σ_j exp(v_u^T e_j)` (Eq. 10), by default a sampled
softmax (the paper's; see `configs/mind.py`).

Serving (`score_items`): the paper lets each interest retrieve its nearest items; ranking by
`f_score(V_u, e_i) = max_k e_i^T v_u^k` is that retrieval merged by score (ComiRec's
evaluation of MIND), `[B, K, V]` logits. `__call__` keeps the model contract: hidden
`[B, 1, D]` is the mean interest (the p = 0 user vector), which no evaluation uses.

Inputs shorter than `max_len` are left-padded to it (the fixed routing draw is per position,
counted from the latest behavior); longer ones are an error. Not causal: `T = 1`.

Other choices: Glorot-uniform item (and user) tables, as ComiRec's code (std
`sqrt(2 / (V + D))`, 0.02 for 4k items); Flax's LeCun-normal S and ReLU kernels (the code:
Glorot uniform); `dropout` (none in the paper or the code) on the behavior embeddings.

Shapes: inputs `[B, L, F]` -> e `[B, L, D]` -> z `[B, K, L, D]` -> capsules `[B, K, D]` ->
interests `[B, K, D]` -> scores `[B, V]`; hidden `[B, 1, D]`, item table `[V, D]`.
"""

from __future__ import annotations

import math
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from pmix_jax import losses
from pmix_jax.errors import ConfigError
from pmix_jax.models import register
from pmix_jax.models.bpr_mf import user_ids
from pmix_jax.models.layers import Dropout, left_pad
from pmix_jax.models.mgnm import dynamic_routing

ROUTING_INITS = ('random', 'fixed')
# The item (and user) tables' initialiser: the code's Glorot uniform.
ITEM_INIT = nn.initializers.xavier_uniform()
# The constant key of the shared routing draw (evaluation, and 'fixed' training).
ROUTING_KEY = 0


def label_aware_attention(compatibility: jax.Array, power: float) -> jax.Array:
  """Weights `[..., K]` of the interests from `compatibility` `V_u^T e_t` `[..., K]`:
  `softmax(sign(s) |s|^p)`, uniform for p = 0, one-hot on the argmax (the first of ties) for
  p = inf. Only the soft weights carry gradients."""
  k = compatibility.shape[-1]
  if power == math.inf:
    return jax.nn.one_hot(jnp.argmax(compatibility, axis=-1), k, dtype=compatibility.dtype)
  if power == 0:
    return jnp.full(compatibility.shape, 1.0 / k, compatibility.dtype)
  size = jnp.abs(compatibility)
  # |s|^p for p < 1 has an infinite slope at 0 (a dead ReLU interest): 0 there, finitely.
  powered = jnp.where(size > 0, jnp.where(size > 0, size, 1.0) ** power, 0.0)
  return jax.nn.softmax(jnp.sign(compatibility) * powered, axis=-1)


def max_over_interests(interests: jax.Array, table: jax.Array) -> jax.Array:
  """`max_k e_i^T v_u^k`: `interests` `[B, K, D]`, `table` `[V, D]` -> `[B, V]`."""
  batch, k, dim = interests.shape
  # A 2-D product: XLA's CPU dot is much slower on the equivalent 3-D einsum.
  return (interests.reshape(-1, dim) @ table.T).reshape(batch, k, -1).max(axis=1)


def prefix_targets(batch: dict[str, jax.Array], model: str) -> jax.Array:
  """`batch['targets']` `[B]`, after checking that there is one target per row."""
  targets = jnp.asarray(batch['targets'])
  if targets.ndim != 1:
    raise ConfigError(f"{model} scores one target per row: set config.train.targets='prefix'")
  return targets


def readout_loss(interests: jax.Array, table: jax.Array, targets: jax.Array, power: float,
                 loss: str, key: jax.Array, num_negatives: int) -> jax.Array:
  """`loss` of the user vectors `v_u = Σ_k a_k v_u^k` `[B, D]`, `a` the label-aware
  attention of each target `[B]` over `interests` `[B, K, D]` (the argmax interest for
  p = inf), against `table` `[V, D]`."""
  compatibility = jnp.einsum('bkd,bd->bk', interests, table[targets])
  weights = label_aware_attention(compatibility, power)
  user = jnp.einsum('bk,bkd->bd', weights, interests)
  return losses.LOSSES[loss](user[:, None], table, targets[:, None], key, num_negatives)


class MultiInterest(nn.Module):
  """What MIND and ComiRec (`comirec.py`) share: their common fields, and the readout of the
  interests `V_u` `[B, K, D]` that a subclass's `interests` extracts."""
  vocab_sizes: tuple[int, ...]
  max_len: int
  hidden: int = 64  # d
  dropout: float = 0.0
  num_interests: int = 4  # K

  causal: ClassVar[bool] = False

  def interests(self, inputs: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
    """`inputs` `[B, L, F]` -> interests `V_u` `[B, K, D]`, item table `[V, D]`."""
    raise NotImplementedError

  def __call__(self, inputs: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
    """`inputs` `[B, L, F]` -> hidden `[B, 1, D]` (the mean interest), item table `[V, D]`."""
    interests, table = self.interests(inputs, train=train)
    return interests.mean(axis=1, keepdims=True), table

  def score_items(self, inputs: jax.Array) -> jax.Array:
    """`[B, V]` scores `max_k e_i^T v_u^k` of every item after `inputs` (evaluation mode)."""
    return max_over_interests(*self.interests(inputs, train=False))

  def score_candidates(self, inputs: jax.Array, candidates: jax.Array) -> jax.Array:
    """`[B, C]` scores `max_k e_i^T v_u^k` of the items `candidates` `[B, C]` only."""
    interests, table = self.interests(inputs, train=False)
    return jnp.einsum('bkd,bcd->bkc', interests, table[candidates]).max(axis=1)


@register('mind')
class MIND(MultiInterest):
  routing_iterations: int = 3  # r
  routing_init: str = 'random'  # 'random' (fresh draws in training) | 'fixed'
  relu_layers: int = 1
  attention_power: float = math.inf  # p; inf: hard attention.
  user_field: int = -1  # Index of the derived `user` field; -1: no user profile.

  def _check_config(self) -> None:
    if self.routing_init not in ROUTING_INITS:
      raise ConfigError(f'mind routing_init must be one of {list(ROUTING_INITS)}, not '
                        f'{self.routing_init!r}')
    for name in ('num_interests', 'routing_iterations'):
      if getattr(self, name) < 1:
        raise ConfigError(f'mind {name} must be at least 1, not {getattr(self, name)}')
    if self.relu_layers < 0:
      raise ConfigError(f'mind relu_layers must be >= 0, not {self.relu_layers}')
    if not self.attention_power >= 0:  # Also refuses NaN.
      raise ConfigError(f'mind attention_power must be >= 0 (inf: hard attention), not '
                        f'{self.attention_power}')
    if not 0.0 <= self.dropout < 1.0:
      raise ConfigError(f'mind dropout must lie in [0, 1), not {self.dropout}')
    if self.user_field != -1 and self.relu_layers < 1:
      raise ConfigError('mind concatenates the user embedding to the capsules before the '
                        'ReLU layers: a user_field needs relu_layers >= 1')

  def routing_logits(self, batch: int, *, train: bool) -> jax.Array:
    """The initial routing logits `b` `[B, K, max_len]` (see the module doc)."""
    shape = (self.num_interests, self.max_len)
    if train and self.routing_init == 'random':
      return jax.random.truncated_normal(self.make_rng('dropout'), -2.0, 2.0, (batch, *shape))
    draw = jax.random.truncated_normal(jax.random.key(ROUTING_KEY), -2.0, 2.0, shape)
    return jnp.broadcast_to(draw, (batch, *shape))

  @nn.compact
  def interests(self, inputs: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
    """`inputs` `[B, L, F]` -> interests `V_u` `[B, K, D]`, item table `[V, D]`."""
    self._check_config()
    inputs = left_pad(inputs, self.max_len, 'mind')
    items = inputs[..., 0]
    valid = items > 0
    batch, length = items.shape
    dim, k = self.hidden, self.num_interests
    table = jnp.asarray(self.param('item_embed', ITEM_INIT,
                                   (self.vocab_sizes[0], dim)))
    e = Dropout(self.dropout)(table[items] * valid[..., None], deterministic=not train)
    # S e_i, shared by the interests: no bias, so padding stays zero.
    shared = nn.Dense(dim, use_bias=False, name='bilinear')(e.reshape(-1, dim))
    z = jnp.broadcast_to(shared.reshape(batch, 1, length, dim), (batch, k, length, dim))
    logits = jax.lax.stop_gradient(self.routing_logits(batch, train=train))
    capsules = dynamic_routing(z, valid, logits, self.routing_iterations)  # [B, K, D]
    self.sow('intermediates', 'capsules', capsules)
    x = capsules
    if self.user_field != -1:
      users = user_ids(inputs, self.vocab_sizes, self.user_field, 'mind').max(axis=1)
      user_table = self.param('user_embed', ITEM_INIT,
                              (self.vocab_sizes[self.user_field], dim))
      x = jnp.concatenate([x, jnp.broadcast_to(user_table[users][:, None], x.shape)], -1)
    for i in range(self.relu_layers):
      x = nn.relu(nn.Dense(dim, name=f'relu_{i}')(x.reshape(batch * k, -1)))
    return x.reshape(batch, k, dim), table

  def training_loss(self, batch: dict[str, jax.Array], *, loss: str,
                    num_negatives: int) -> jax.Array:
    """`config.train.loss` of the label-aware user vector against each target."""
    targets = prefix_targets(batch, 'mind')
    interests, table = self.interests(batch['inputs'], train=True)
    return readout_loss(interests, table, targets, self.attention_power, loss,
                        self.make_rng('negatives'), num_negatives)
