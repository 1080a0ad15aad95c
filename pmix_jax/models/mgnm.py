"""MGNM: multi-grained neural model (Tian et al., "When Multi-Level Meets Multi-Interest",
SIGIR 2022), built from the paper's equations (NOTES section 2), the official TensorFlow
code (WHUIR/MGNM) where the paper is silent.

Embedding layer: a user table and an item table of width d (`hidden`); the user u of a row
is read from the derived `user` field (`bpr_mf.user_ids`), the behaviors give
`x_1..x_m` `[B, L, D]` (zero at padding).

User-aware graph convolution (UGCN), over the behaviors of each sequence:
- Eq. 1, the adaptive adjacency `A_ij = sigmoid((x_i ⊙ x_j) · x_u)` between real behaviors
  (0 where i or j is padding). `graph='dot'` is the official code's variant, where the user
  term is switched off: `A_ij = sigmoid(x_i · x_j)`;
- Eq. 3, the propagation matrix `P = I + D^-1/2 A D^-1/2`, `D_ii = Σ_j A_ij` (the equation
  as printed; the self-loop is added after normalising, not before as in Kipf's
  renormalisation, and `A_ii` is kept). The code propagates over the raw A by default
  (`norm_adj=False`), its option being the one-sided `D̃^-1/2 (A + I)`;
- Eq. 2 and 4, `H^(0) = [x_1..x_m]` and `H^(l+1) = δ(P H^(l) W^(l))`, iterated as the
  paper writes: level l + 1 convolves level l (the code re-applies one layer to the raw
  embeddings, and crashes with more than two levels), with weights of its own per layer and
  no bias (Eq. 2; the code adds one). δ is the code's leaky ReLU (slope 0.2, TF's);
  `num_levels` counts H^(0..L), 4 in the code. `use_graph=False` (Table 3's "w/o UGCN")
  keeps H^(0) alone.

Sequential capsule network, applied to every level with one set of weights (the paper
writes `W_i`, `W'_c` without a level index, and the code reuses one network):
- Eq. 5, a bilinear map per position: `z_cj = W_jc h_j`, `W` `[L, K, d', D]` (the code's
  `bilinear_type=2`, positions counted from the latest behavior), `Z` `[N, K, L, d']` with
  `N = B * levels`. `bilinear='per_interest'` shares one map per interest over the
  positions, `W` `[K, d', D]` (ComiRec's `bilinear_type=1`; in MGNM's code that number
  selects an LSTM);
- Eq. 10, `Z = Z + BiLSTM(Z)` (`use_bilstm`): a bidirectional LSTM of width d' per
  direction over the positions of `Z` (its K interests concatenated, `[N, L, K d']`) and a
  linear map (no bias, as the code) back to `K d'`. It replaces Z before routing, as the
  equation reads (`bilstm_placement='eq10'`). The code's placement, `'routing'`, adds it
  to the stop-gradient Z of the middle routing iteration only (the BiLSTM reads that
  stop-gradient Z too) and pools the plain Z: the BiLSTM then learns through the last
  coupling only, shaping which interest each behavior joins. Read as 'eq10', on Toys the
  BiLSTM's term grows to many times Z and, in the first epochs, is the same for every
  user, so every user gets the same interests (`experiments/mgnm/PROBES.md`). The recurrence
  (`lstm.bidirectional_lstm`) runs only as many steps as the rows have behaviors, with a
  hand-written gradient: a scan over the whole window was most of a training step on Toys'
  short histories;
- Eq. 6-9, dynamic routing (`routing_iterations`, 3): coupling `c = softmax(g)` over the
  K interests of each behavior (the code's axis; 0 at padding), `v_c = Σ_j c_cj z_cj`
  (Eq. 8), `o_c = squash(v_c)` (Eq. 7), `g_cj += o_c · z_cj` (Eq. 9). As in the code
  (ComiRec-DR's routing), the logits are computed from `stop_gradient(Z)`: gradients reach
  Z through the last iteration's `v_c` only. The logits start from a stop-gradient draw
  (`routing_init='random'`, the code's truncated normal, σ = 1, drawn from the 'dropout'
  stream in training); in evaluation they start from its mean, zero, so that scores are
  deterministic (the code draws at test time too). `routing_init='zeros'` starts from
  zero in training as well;
- Eq. 11, `q_c = ReLU(o_c W'_c)`, `W'_c` `[d', D]` per interest (`projection`; the code
  leaves it off, `relu_layer=False`, which needs `capsule_dim == hidden`).

Table 3's "SCN → ..." rows (`interest_extractor`) keep Eq. 5 and 11 and replace how the K
interests are drawn from Z (Eq. 6-10; `use_bilstm` applies to 'capsule' only):
- 'bilstm': the BiLSTM above over Z, its final states (forward after the latest behavior,
  backward after the oldest) concatenated and mapped linearly to the K interests `[K, d']`;
- 'sum': sum pooling, `o_c = Σ_j z_cj` over the real behaviors;
- 'self_attention': ComiRec-SA's K-head attention, `a_c = softmax_j(w_c · tanh(W h_j + b)
  + b_c)` over the real behaviors (hidden width 4D), `o_c = Σ_j a_cj z_cj`.

Prediction: per level, target-aware attention over the interests, `a_j = softmax_j(q_j ·
x_t)` (Eq. 13), `p_u = Σ_j a_j q_j` (Eq. 12), `ŷ^(l) = p_u · x_t` (Eq. 14). Evaluation
(`score_items`) pools the levels' scores by their max (Eq. 15; `pooling='sum'` is Figure 7's
alternative, Table 3's "w/o MaxPool"), as `[B, levels, K, V]` logits: memory grows as
`B * levels * K * V`, so lower `config.eval.batch_size` for large catalogues.

Training (`training_loss`, `train.targets='prefix'`, `train.loss='bce'`): Eq. 16-17, the
binary cross-entropy of the target against `num_negatives` items per target, summed over
the levels, averaged over targets (the code sums over a batch; Adam does not mind the
scale), plus `l1_weight * Σ_ij |A_ij|` (averaged over rows) and `l2_weight * ½ Σ θ²` over all
parameters (the code's `tf.nn.l2_loss`, whole tables included). The code's weights are
both 1e-5 against a sum over 42 targets of 6 rows each, each row repeating its history's
adjacency: per target its L1 weight is 6e-5 and its L2 weight 1e-5 / 42. Negatives are
uniform over the items other than the target (the code also avoids the history; we do not:
among the papers' 56k-242k items, one of a history of 100 is a rare draw).
`train.loss='sampled_softmax'` (not the paper's; `configs/mgnm.py:sampled_softmax`) swaps
the BCE for the multi-interest baselines' loss: per level, a softmax over the target and
`num_negatives` uniform items shared by the batch, so that a comparison with MIND or
ComiRec can tell the model from its training signal.

`__call__` keeps the model contract for the tools that use it: hidden `[B, 1, D]` is the
interests averaged over K and the levels (the user state under uniform attention), which
no evaluation uses. Inputs may be narrower than `max_len`: the per-position maps of Eq. 5
count from the latest behavior and padding is masked throughout, so the scores are those of
the input left-padded to `max_len`, and the cost (the graph is `[L, L]`) falls with the
width. Wider inputs are an error. Not causal: `T = 1`.

Other choices the paper leaves open: tables `N(0, 0.3)` (`EMBED_STD`; the code's user
table is `N(0, 0.1)`, its item table Glorot-uniform, 0.003 for 200k items), `W` `N(0, 1)`
(the code's; `bilinear_std`), LeCun-normal GCN and projection weights; `dropout` (0 in
the code) on the embeddings.

Shapes: inputs `[B, L, F]` -> H `[B, levels, L, D]` -> Z `[N, K, L, d']` -> interests
`[B, levels, K, D]` -> scores `[B, V]`; hidden `[B, 1, D]`, item table `[V, D]`.
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from pmix_jax.errors import ConfigError
from pmix_jax.losses import NEG_INF, sampled_cross_entropy
from pmix_jax.models import register
from pmix_jax.models.bpr_mf import user_ids
from pmix_jax.models.layers import Dropout
from pmix_jax.models.lstm import LSTMWeights, bidirectional_lstm

GRAPHS = ('user_aware', 'dot')
EXTRACTORS = ('capsule', 'bilstm', 'sum', 'self_attention')
POOLINGS = ('max', 'sum')
ROUTING_INITS = ('random', 'zeros')
BILSTM_PLACEMENTS = ('eq10', 'routing')
BILINEARS = ('per_position', 'per_interest')
# The tables' N(0, σ). A score is a product of two factors drawn from them (interests and
# x_t), so small tables start on a plateau: on the synthetic data σ = 0.1 (the code's user
# table) needed twice the epochs of σ = 0.3 to beat popularity.
EMBED_STD = 0.3


def adjacency(x: jax.Array, valid: jax.Array, user: jax.Array | None) -> jax.Array:
  """Eq. 1: `x` `[B, L, D]`, `valid` `[B, L]`, `user` `[B, D]` (None: the code's
  `sigmoid(x_i · x_j)`) -> `A` `[B, L, L]`, zero in padding rows and columns."""
  if user is None:
    logits = jnp.einsum('bid,bjd->bij', x, x)
  else:
    logits = jnp.einsum('bid,bjd->bij', x * user[:, None], x)
  return jax.nn.sigmoid(logits) * (valid[:, :, None] & valid[:, None, :])


def propagation(a: jax.Array, valid: jax.Array) -> jax.Array:
  """Eq. 3: `P = I + D^-1/2 A D^-1/2` `[B, L, L]` over the real behaviors (0 elsewhere)."""
  degree = a.sum(-1)
  # A real behavior has degree > 0 (sigmoid > 0); the inner where keeps gradients finite.
  inv_sqrt = jnp.where(degree > 0, jax.lax.rsqrt(jnp.where(degree > 0, degree, 1.0)), 0.0)
  eye = jnp.eye(a.shape[-1], dtype=a.dtype) * valid[:, :, None]
  return eye + inv_sqrt[:, :, None] * a * inv_sqrt[:, None, :]


def squash(v: jax.Array) -> jax.Array:
  """Eq. 7 over the last axis: `|v|² / (1 + |v|²) · v / |v|` (with the code's 1e-9)."""
  norm2 = jnp.sum(v * v, axis=-1, keepdims=True)
  return norm2 / (1.0 + norm2) * v / jnp.sqrt(norm2 + 1e-9)


def dynamic_routing(z: jax.Array, valid: jax.Array, logits: jax.Array, iterations: int,
                    second: jax.Array | None = None) -> jax.Array:
  """Eq. 6-9: `z` `[N, K, L, d']`, `valid` `[N, L]`, initial logits `g` `[N, K, L]` ->
  interest capsules `o` `[N, K, d']`.

  Every iteration couples `c = softmax_K(g)` (0 at padding); all but the last squash
  `v = Σ_j c_j z_j` and add the agreement `o · z_j` to `g`, from `stop_gradient(z)`, or
  from `second` `[N, K, L, d']` in the second iteration if given (MGNM's code routes its
  BiLSTM there; gradients then reach `second` through the last coupling)."""
  for i in range(iterations):  # Unrolled: 3 small steps.
    coupling = jax.nn.softmax(logits, axis=1) * valid[:, None, :]  # Eq. 6
    if i == iterations - 1:
      break
    routed = second if i == 1 and second is not None else jax.lax.stop_gradient(z)
    capsules = squash(jnp.einsum('nkl,nkld->nkd', coupling, routed))  # Eq. 8, 7
    logits = logits + jnp.einsum('nkld,nkd->nkl', routed, capsules)  # Eq. 9
  return squash(jnp.einsum('nkl,nkld->nkd', coupling, z))


def attend(logits: jax.Array) -> jax.Array:
  """Eq. 12-14 from `logits` `q_j · x_t` `[..., K, C]` (K interests, C candidates):
  `p_u · x_t = Σ_j softmax_j(q_j · x_t) q_j · x_t` `[..., C]`."""
  return jnp.sum(jax.nn.softmax(logits, axis=-2) * logits, axis=-2)


def pool_levels(scores: jax.Array, pooling: str) -> jax.Array:
  """Eq. 15 (`'max'`) or Figure 7's sum over the levels axis 1 of `scores` `[B, levels, V]`."""
  return scores.max(axis=1) if pooling == 'max' else scores.sum(axis=1)


class SequenceBiLSTM(nn.Module):
  """A bidirectional LSTM over left-padded sequences (`lstm.bidirectional_lstm`), then a
  linear map (no bias): `x` `[N, L, E]`, `valid` `[N, L]` -> `[N, L, out]` (zero at
  padding), or with `final=True` the map of the two final states `[N, out]` (forward after
  the latest behavior, backward after the oldest)."""
  features: int  # Per direction.
  out_features: int

  @nn.compact
  def __call__(self, x: jax.Array, valid: jax.Array, *, final: bool = False) -> jax.Array:
    states, finals = bidirectional_lstm(
        x, valid, LSTMWeights(self.features, name='forward')(x.shape[-1]),
        LSTMWeights(self.features, name='backward')(x.shape[-1]))
    readout = nn.Dense(self.out_features, use_bias=False, name='output')
    return readout(finals) if final else readout(states) * valid[..., None]


class InterestExtractor(nn.Module):
  """The sequential capsule network (or a Table 3 replacement) shared by the levels:
  `h` `[N, L, D]`, `valid` `[N, L]` -> interests `q` `[N, K, D]` (Eq. 5-11).

  Per-position maps are `positions` (default: the width of the first input) counted back
  from the latest behavior: an input narrower than that uses the latest L of them."""
  num_interests: int
  capsule_dim: int
  routing_iterations: int
  routing_init: str
  use_bilstm: bool
  kind: str
  projection: bool
  bilstm_placement: str = 'eq10'
  bilinear: str = 'per_position'
  bilinear_std: float = 1.0
  positions: int | None = None

  @nn.compact
  def __call__(self, h: jax.Array, valid: jax.Array, *, train: bool) -> jax.Array:
    n, length, dim = h.shape
    k, c = self.num_interests, self.capsule_dim
    init = nn.initializers.normal(self.bilinear_std)
    if self.bilinear == 'per_position':  # Eq. 5
      bilinear = self.param('bilinear', init, (self.positions or length, k, c, dim))
      z = jnp.einsum('nld,lkcd->nklc', h, bilinear[bilinear.shape[0] - length:])
    else:
      bilinear = self.param('bilinear', init, (k, c, dim))
      z = jnp.einsum('nld,kcd->nklc', h, bilinear)
    z = z * valid[:, None, :, None]
    bilstm = lambda: SequenceBiLSTM(c, k * c, name='bilstm')
    flat = lambda: z.transpose(0, 2, 1, 3).reshape(n, length, k * c)  # [N, L, K d']
    if self.kind == 'capsule':
      unflat = lambda x: x.reshape(n, length, k, c).transpose(0, 2, 1, 3)
      second = None
      if self.use_bilstm and self.bilstm_placement == 'eq10':  # Eq. 10
        added = unflat(bilstm()(flat(), valid))
        self.sow('intermediates', 'z_and_bilstm_term', (z, added))
        z = z + added
      elif self.use_bilstm:  # The code's: on the stop-gradient Z of the second iteration.
        fixed = jax.lax.stop_gradient(z)
        added = unflat(bilstm()(jax.lax.stop_gradient(flat()), valid))
        self.sow('intermediates', 'z_and_bilstm_term', (fixed, added))
        second = fixed + added
      if train and self.routing_init == 'random':
        logits = jax.lax.stop_gradient(jax.random.truncated_normal(
            self.make_rng('dropout'), -2.0, 2.0, (n, k, length), z.dtype))
      else:
        logits = jnp.zeros((n, k, length), z.dtype)
      interests = dynamic_routing(z, valid, logits, self.routing_iterations, second)
    elif self.kind == 'bilstm':
      interests = bilstm()(flat(), valid, final=True).reshape(n, k, c)
    elif self.kind == 'sum':
      interests = z.sum(axis=2)  # Padding positions of z are zero.
    else:  # 'self_attention', ComiRec-SA's heads.
      hidden = jnp.tanh(nn.Dense(4 * dim, name='attention_hidden')(h))
      logits = nn.Dense(k, name='attention_heads')(hidden).transpose(0, 2, 1)  # [N, K, L]
      weights = jax.nn.softmax(jnp.where(valid[:, None, :], logits, NEG_INF), axis=-1)
      interests = jnp.einsum('nkl,nklc->nkc', weights, z)
    self.sow('intermediates', 'capsules', interests)  # Before Eq. 11: [N, K, d'].
    if not self.projection:
      return interests
    kernel = self.param('projection', nn.initializers.lecun_normal(batch_axis=(0,)),
                        (k, c, dim))
    return nn.relu(jnp.einsum('nkc,kcd->nkd', interests, kernel))  # Eq. 11


@register('mgnm')
class MGNM(nn.Module):
  vocab_sizes: tuple[int, ...]
  max_len: int
  hidden: int = 16  # d
  dropout: float = 0.0
  user_field: int = 1
  num_levels: int = 4  # H^(0..L): the raw embeddings and num_levels - 1 graph layers.
  num_interests: int = 4  # K
  capsule_dim: int = 16  # d'
  routing_iterations: int = 3
  routing_init: str = 'random'  # 'random' | 'zeros'
  graph: str = 'user_aware'  # 'user_aware' (Eq. 1) | 'dot' (the code's)
  use_graph: bool = True  # False: H^(0) alone (w/o UGCN).
  use_bilstm: bool = True  # False: no Eq. 10 (w/o BiLSTM).
  bilstm_placement: str = 'eq10'  # 'eq10' | 'routing' (the code's), see the module doc.
  bilinear: str = 'per_position'  # Eq. 5 | 'per_interest' (shared over positions).
  bilinear_std: float = 1.0  # W ~ N(0, σ²) (the code's σ = 1).
  interest_extractor: str = 'capsule'  # | 'bilstm' | 'sum' | 'self_attention'
  projection: bool = True  # Eq. 11; False is the code's relu_layer=False.
  pooling: str = 'max'  # Over levels in evaluation: 'max' (Eq. 15) | 'sum'.
  l1_weight: float = 1e-5  # θ1, on the adjacency (0: w/o L1Norm).
  l2_weight: float = 1e-5  # θ2, on every parameter.

  causal: ClassVar[bool] = False

  @property
  def levels(self) -> int:
    return self.num_levels if self.use_graph else 1

  def _check_config(self, length: int) -> None:
    for name, value, known in [('graph', self.graph, GRAPHS),
                               ('interest_extractor', self.interest_extractor, EXTRACTORS),
                               ('pooling', self.pooling, POOLINGS),
                               ('routing_init', self.routing_init, ROUTING_INITS),
                               ('bilstm_placement', self.bilstm_placement, BILSTM_PLACEMENTS),
                               ('bilinear', self.bilinear, BILINEARS)]:
      if value not in known:
        raise ConfigError(f'mgnm {name} must be one of {list(known)}, not {value!r}')
    for name in ('num_levels', 'num_interests', 'capsule_dim', 'routing_iterations'):
      if getattr(self, name) < 1:
        raise ConfigError(f'mgnm {name} must be at least 1, not {getattr(self, name)}')
    if self.bilinear_std <= 0:
      raise ConfigError(f'mgnm bilinear_std must be > 0, not {self.bilinear_std}')
    if self.l1_weight < 0 or self.l2_weight < 0:
      raise ConfigError('mgnm l1_weight and l2_weight must be >= 0')
    if not 0.0 <= self.dropout < 1.0:
      raise ConfigError(f'mgnm dropout must lie in [0, 1), not {self.dropout}')
    if not self.projection and self.capsule_dim != self.hidden:
      raise ConfigError(f'mgnm without projection scores capsules against items: '
                        f'capsule_dim ({self.capsule_dim}) must equal hidden ({self.hidden})')
    if length > self.max_len:
      raise ConfigError(f'mgnm got sequences of length {length} > max_len {self.max_len}')

  @nn.compact
  def interests(self, inputs: jax.Array, *,
                train: bool) -> tuple[jax.Array, jax.Array | None, jax.Array]:
    """`inputs` `[B, L, F]` -> interests `q` `[B, levels, K, D]`, the adjacency `A`
    `[B, L, L]` (None without graph layers), item table `[V, D]`.

    Sows the levels H `[B, levels, L, D]`, A, the interests before Eq. 11
    (`interests/capsules`, `[B * levels, K, d']`) and, with the BiLSTM, Z and the term Eq. 10
    adds to it (`interests/z_and_bilstm_term`, two `[B * levels, K, L, d']`) into
    'intermediates'."""
    inputs = jnp.asarray(inputs)
    self._check_config(inputs.shape[1])
    items = inputs[..., 0]
    valid = items > 0
    init = nn.initializers.normal(EMBED_STD)
    table = jnp.asarray(self.param('item_embed', init, (self.vocab_sizes[0], self.hidden)))
    x = Dropout(self.dropout)(table[items] * valid[..., None], deterministic=not train)

    levels, a = [x], None  # Eq. 4
    if self.levels > 1:
      user = None
      if self.graph == 'user_aware':
        users = user_ids(inputs, self.vocab_sizes, self.user_field, 'mgnm').max(axis=1)
        user = jnp.asarray(self.param('user_embed', init,
                                      (self.vocab_sizes[self.user_field], self.hidden)))[users]
      a = adjacency(x, valid, user)  # Eq. 1
      p = propagation(a, valid)  # Eq. 3
      for level in range(self.levels - 1):  # Eq. 2
        h = nn.Dense(self.hidden, use_bias=False, name=f'gcn_{level}')(levels[-1])
        levels.append(nn.leaky_relu(jnp.einsum('bij,bjd->bid', p, h), 0.2))
      self.sow('intermediates', 'adjacency', a)
    h = jnp.stack(levels, axis=1)  # [B, levels, L, D]
    self.sow('intermediates', 'levels', h)

    batch, num_levels, length, dim = h.shape
    extractor = InterestExtractor(self.num_interests, self.capsule_dim,
                                  self.routing_iterations, self.routing_init,
                                  self.use_bilstm, self.interest_extractor, self.projection,
                                  self.bilstm_placement, self.bilinear, self.bilinear_std,
                                  self.max_len, name='interests')
    q = extractor(h.reshape(-1, length, dim), jnp.repeat(valid, num_levels, axis=0),
                  train=train)
    return q.reshape(batch, num_levels, self.num_interests, dim), a, table

  def __call__(self, inputs: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
    """`inputs` `[B, L, F]` -> hidden `[B, 1, D]` (the mean interest), item table `[V, D]`."""
    q, _, table = self.interests(inputs, train=train)
    return q.mean(axis=(1, 2))[:, None], table

  def level_scores(self, q: jax.Array, candidates: jax.Array) -> jax.Array:
    """Eq. 12-14 per level: `q` `[B, levels, K, D]`, candidate embeddings `[B, C, D]` ->
    `[B, levels, C]`."""
    return attend(jnp.einsum('blkd,bcd->blkc', q, candidates))

  def score_items(self, inputs: jax.Array) -> jax.Array:
    """`[B, V]` scores of every item after `inputs` `[B, L, F]` (evaluation mode)."""
    q, _, table = self.interests(inputs, train=False)
    return pool_levels(attend(jnp.einsum('blkd,vd->blkv', q, table)), self.pooling)

  def score_candidates(self, inputs: jax.Array, candidates: jax.Array) -> jax.Array:
    """`[B, C]` scores of the items `candidates` `[B, C]` (what sampled protocols ask):
    the `[B, levels, K, C]` logits instead of `score_items`' `[B, levels, K, V]`."""
    q, _, table = self.interests(inputs, train=False)
    return pool_levels(self.level_scores(q, table[candidates]), self.pooling)

  def negatives(self, targets: jax.Array, num_negatives: int) -> jax.Array:
    """`[B, num_negatives]` items drawn uniformly from those other than each target `[B]`,
    from the 'negatives' RNG stream (the first draw of `training_loss`)."""
    draw = jax.random.randint(self.make_rng('negatives'), (*targets.shape, num_negatives), 1,
                              self.vocab_sizes[0] - 1)
    return draw + (draw >= targets[..., None])  # Skips the target: [1, V) minus it.

  def shared_negatives(self, num_negatives: int) -> jax.Array:
    """`[num_negatives]` items uniform over `[1, V)` with replacement, shared by the batch
    (the 'negatives' stream's first draw in `training_loss` with `sampled_softmax`)."""
    return jax.random.randint(self.make_rng('negatives'), (num_negatives,), 1,
                              self.vocab_sizes[0])

  def training_loss(self, batch: dict[str, jax.Array], *, loss: str,
                    num_negatives: int) -> jax.Array:
    """Eq. 16-17 (`loss='bce'`): per-level BCE summed over levels, averaged over targets,
    plus the L1 and L2 terms (see the module doc). `loss='sampled_softmax'` replaces the
    BCE by a per-level softmax over the target and `num_negatives` uniform items shared by
    the batch (MIND's and ComiRec's loss; not the paper's)."""
    if loss not in ('bce', 'sampled_softmax'):
      raise ConfigError(f"mgnm trains with its paper's binary cross-entropy over sampled "
                        f"negatives, config.train.loss='bce' (or 'sampled_softmax', the "
                        f"multi-interest baselines' loss), not {loss!r}")
    if num_negatives < 1:
      raise ConfigError('mgnm needs config.train.num_negatives >= 1')
    targets = jnp.asarray(batch['targets'])
    if targets.ndim != 1:
      raise ConfigError("mgnm scores one target per row: set config.train.targets='prefix'")
    q, a, table = self.interests(batch['inputs'], train=True)
    if loss == 'bce':
      negatives = self.negatives(targets, num_negatives)
      candidates = jnp.concatenate([targets[:, None], negatives], axis=1)  # [B, 1 + n]
      scores = self.level_scores(q, table[candidates])  # [B, levels, 1 + n]
      per_level = -(jax.nn.log_sigmoid(scores[..., 0])
                    + jax.nn.log_sigmoid(-scores[..., 1:]).sum(-1))  # Eq. 17
    else:
      shared = self.shared_negatives(num_negatives)
      positive = self.level_scores(q, table[targets][:, None])[..., 0]  # [B, levels]
      negative = attend(jnp.einsum('blkd,sd->blks', q, table[shared]))  # [B, levels, n]
      per_level = sampled_cross_entropy(positive, negative, shared, targets[:, None])
    rows = targets > 0  # 0: a filler row.
    mean = lambda per_row: jnp.sum(jnp.where(rows, per_row, 0.0)) / jnp.maximum(rows.sum(), 1)
    total = mean(per_level.sum(axis=1))  # Eq. 16's sum over levels.
    if a is not None and self.l1_weight:
      total += self.l1_weight * mean(a.sum(axis=(1, 2)))  # A >= 0: its L1 norm.
    if self.l2_weight:
      squares = jax.tree_util.tree_map(lambda v: jnp.sum(v * v), self.variables['params'])
      total += self.l2_weight * 0.5 * sum(jax.tree_util.tree_leaves(squares))
    return total
