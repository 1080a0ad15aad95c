"""A2SVD and SLi-Rec (Yu et al., "Adaptive User Modeling with Long and Short-Term Preferences
for Personalized Recommendation", IJCAI 2019), as Microsoft Recommenders implements them
(`recommenders/models/deeprec/models/sequential/{asvd,sli_rec}.py` and their base classes), the
code whose protocol SURGE and MGNM follow. The pieces shared with SURGE (`surge.py`) live here:
the prediction MLP, the target-aware attention, the candidate scoring and the training loss.

Both are target-aware click models: the candidate item t enters the network and a final MLP
maps the user vector and t to one logit. Embeddings: behaviors `x_1..x_L` `[B, L, E]` (zero
at padding) and candidates `e_t` `[B, C, E]` from one item table of width E (`hidden`).

A2SVD (`a2svd`), attentive asymmetric SVD, the paper's long-term model:
- (1) attention pooling (the code's `_attention`): `a_j = (x_j W) · q`, `W` `[E, E]`, `q`
  `[E]`, `α = softmax_j(a_j)` over the real behaviors, `u^l = Σ_j α_j x_j` `[B, E]`;
- (2) with `use_user=True`, `u^l += p_u` (SVD++'s explicit user factor, from the derived
  `user` field, `bpr_mf.user_ids`). The code's A2SVD and SLi-Rec never read the user (it
  looks its embedding up and leaves it unused), and ASVD represents a user by her items
  alone: the default is False;
- (3) `ŷ = FCN([u^l ; e_t])`, the code's `_fcn_net`: ReLU layers of `layer_sizes` (100, 64)
  and a linear output of width 1.

SLi-Rec (`sli_rec`):
- (4) the long-term vector `u^l` of (1)-(2);
- (5) short-term: an LSTM of width E over the behaviors, `h_1..h_L` `[B, L, E]`. The code's
  Time4LSTM adds two time gates fed by the gap to the previous behavior and to the
  prediction time; our sequences carry no timestamps (the shared Toys copy has none), so the
  gates are dropped and the cell is the code's LSTM without them (TF's gate order i, j, f, o,
  forget bias 1): `c_j = σ(f + 1) c_{j-1} + σ(i) tanh(j)`, `h_j = σ(o) tanh(c_j)`;
- (6) target-aware attention over the LSTM states (the code's `_attention_fcn`):
  `k_j = h_j W_a` (`W_a` `[E, E]`), `s_j = FCN_att([k_j ; e_t ; k_j - e_t ; k_j ⊙ e_t])`
  (`att_fcn_layer_sizes` (80, 40)), `β = softmax_j(s_j)` over the real behaviors,
  `u^s = Σ_j β_j h_j` `[B, C, E]`;
- (7) adaptive fusion: `α = σ(FCN_α([e_t ; u^l ; u^s]))`, `u = α u^l + (1 - α) u^s` (the code
  also feeds the time since the latest behavior to FCN_α: dropped with the timestamps);
- (8) `ŷ = FCN([u ; e_t])` as (3).

Training (`training_loss`, `train.targets='prefix'`): each target is scored against
`num_negatives` items drawn uniformly from the others (the code draws 4 per target from the
training log), by `train.loss`: 'sampled_softmax' is the code's softmax over the 1 + n logits
(`-log softmax_0`, per target: the project's `sampled_softmax` shares negatives across the
batch, ours are per target as the code's), 'bce' the binary cross-entropy of each, 'bpr' the
mean pairwise loss. 'softmax' (every item a class) would run the target-aware network on the
whole catalogue per row and is refused. Regularisation as the code's: `embed_l2 * ½ Σ |e|²`
over the embedding rows the batch touches (each once) plus `layer_l2 * ½ Σ θ²` over every
other parameter (the code's 1e-4 both), added to the mean over targets.

Evaluation (`score_items`) runs the same network on every item, the catalogue in chunks of
about `score_chunk` (row, item) pairs (memory `score_chunk * L * max(att_fcn_layer_sizes)`
floats for SLi-Rec); `score_candidates` scores given items, and is what sampled protocols
call. SLi-Rec's attention runs its MLP
for every (row, item, behavior), `B * V * L` MLP rows: ranking all V = 11,925 items (Toys)
for 64 rows of L = 100 (E = 16) took 16-18 s on this loaded 2-core CPU, against 0.36 s for
101 candidates through `score_candidates`. A2SVD's only target-aware part is (3), whose
first layer is split into a per-row and a per-item product: 0.6 s for the same batch.

Other choices, and differences from the code:
- no category embedding: the code concatenates the category's (8 wide) to the item's (32)
  for behaviors and candidates alike; our models see a candidate as an item id only (the
  evaluation scores ids, and a model has no item -> category map), and embedding the history
  alone would put history and candidates in different spaces. E = `hidden` (the code's 40);
- the attention softmaxes skip padding (the code's `_attention` also weighs the padding
  positions, whose item 0 has an embedding), so that padding changes nothing;
- no batch normalisation in the MLPs (the code's `enable_BN`): the training loop carries no
  batch statistics, so the MLP kernels are LeCun-normal where the code's are N(0, 0.01)
  behind BN (see `FCN`). Dropout (`dropout`, the code's 0.3) on every hidden MLP layer, as
  the code's `_active_layer`;
- initialisation otherwise as the code's: embeddings and attention matrices truncated
  N(0, 0.01) (`init_std`), zero biases, Glorot-uniform LSTM kernel;
- the attention MLP's first layer folds its difference block into the two linear blocks:
  `[k ; e ; k - e ; k ⊙ e] K = k (K_1 + K_3) + e (K_2 - K_3) + (k ⊙ e) K_4`, the same
  parameters and map, without building the broadcast concatenation.

`__call__` keeps the model contract for tools: hidden `[B, 1, E]` is the user vector formed
with the latest behavior as the candidate (`u^l` for A2SVD, `u` for SLi-Rec), which no
evaluation uses; it runs the whole network so that `init` creates every parameter. Inputs
may be narrower than `max_len` (no weight is per position, and padding is masked throughout,
so the scores are those of the input left-padded to it; the cost falls with the width); wider
ones are an error. Not causal: `T = 1`.

Shapes: inputs `[B, L, F]` -> x `[B, L, E]` -> u^l `[B, E]`, LSTM `[B, L, E]`; candidates
`[B or 1, C, E]` -> attention `[B, C, L]` -> u `[B, C, E]` -> logits `[B, C]`; scores `[B, V]`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pmix_jax.errors import ConfigError
from pmix_jax.losses import NEG_INF
from pmix_jax.models import register
from pmix_jax.models.bpr_mf import user_ids
from pmix_jax.models.layers import Dropout

LOSSES = ('sampled_softmax', 'bce', 'bpr')
EMBEDDINGS = ('item_embed', 'user_embed')  # Regularised by embed_l2 (rows touched), not layer_l2.


def masked_softmax(logits: jax.Array, valid: jax.Array) -> jax.Array:
  """Softmax over the last axis among `valid` entries (uniform where none is)."""
  return jax.nn.softmax(jnp.where(valid, logits, NEG_INF), axis=-1)


def uniform_negatives(key: jax.Array, targets: jax.Array, num_negatives: int,
                      num_items: int) -> jax.Array:
  """`[B, num_negatives]` items drawn uniformly from `[1, num_items)` minus each target `[B]`."""
  draw = jax.random.randint(key, (*targets.shape, num_negatives), 1, num_items - 1)
  return draw + (draw >= targets[..., None])


def candidate_loss(logits: jax.Array, targets: jax.Array, loss: str) -> jax.Array:
  """The mean over real targets (> 0) of `loss` on `logits` `[B, 1 + n]`, target first."""
  if loss == 'sampled_softmax':
    per_row = jax.nn.logsumexp(logits, axis=-1) - logits[:, 0]
  elif loss == 'bce':
    per_row = -jax.nn.log_sigmoid(logits[:, 0]) - jax.nn.log_sigmoid(-logits[:, 1:]).sum(-1)
  else:  # 'bpr'
    per_row = -jax.nn.log_sigmoid(logits[:, :1] - logits[:, 1:]).mean(-1)
  rows = targets > 0
  return jnp.sum(jnp.where(rows, per_row, 0.0)) / jnp.maximum(rows.sum(), 1)


def touched_rows_l2(table: jax.Array, ids: jax.Array) -> jax.Array:
  """`½ Σ |table[r]|²` over the distinct nonzero ids `r` in `ids` (the code's regulariser of
  the embeddings a batch involves, each row once)."""
  touched = jnp.zeros(table.shape[0], bool).at[ids.ravel()].set(True).at[0].set(False)
  return 0.5 * jnp.sum(jnp.where(touched[:, None], table * table, 0.0))


class FCN(nn.Module):
  """The code's `_fcn_net`: ReLU layers of `layer_sizes` (dropout before each ReLU) and a
  linear output of width 1, on the concatenation of `inputs` `[..., F_i]` -> `[...]`.

  The code normalises every hidden layer by batch normalisation (`enable_BN`), which makes
  its N(0, 0.01) kernels start at unit scale; without it (the loop keeps no batch
  statistics) the kernels are LeCun-normal instead. N(0, 0.01) kernels, their L2 term and no
  dropout collapsed the network to a constant on Toys (every weight driven to zero, the loss
  stuck at log(1 + n)).

  The inputs broadcast against each other; the first layer multiplies each by its block of
  the kernel and sums, the map of the concatenation without building it. With
  `difference=True` the inputs `(k, e, p)` stand for `[k ; e ; k - e ; p]` (the attention's,
  `p = k ⊙ e`): the kernel has four blocks and the difference's is folded into the first two.
  """
  layer_sizes: tuple[int, ...]
  dropout: float

  @nn.compact
  def __call__(self, inputs: Sequence[jax.Array], *, train: bool,
               difference: bool = False) -> jax.Array:
    widths = (*self.layer_sizes, 1)
    sizes = [x.shape[-1] for x in inputs]
    if difference:
      sizes = [sizes[0], sizes[1], sizes[0], sizes[2]]
    init = nn.initializers.lecun_normal()
    kernel = self.param('kernel_0', init, (sum(sizes), widths[0]))
    blocks = jnp.split(kernel, np.cumsum(sizes)[:-1])
    if difference:
      blocks = [blocks[0] + blocks[2], blocks[1] - blocks[2], blocks[3]]
    h = self.param('bias_0', nn.initializers.zeros, (widths[0],))
    for x, block in zip(inputs, blocks):
      h = h + x @ block
    for i, width in enumerate(widths[1:], 1):
      h = nn.relu(Dropout(self.dropout)(h, deterministic=not train))
      h = nn.Dense(width, kernel_init=init, name=f'layer_{i}')(h)
    return h[..., 0]


class TargetAttention(nn.Module):
  """The code's `_attention_fcn`: weights `softmax_j(FCN([k_j ; q ; k_j - q ; k_j ⊙ q]))` over
  the `valid` positions, `k = keys W`. `keys` `[..., L, K]`, `queries` `[..., L or 1, Q]`,
  `valid` `[..., L]` (all broadcasting) -> `[..., L]`."""
  layer_sizes: tuple[int, ...]
  dropout: float
  init_std: float

  @nn.compact
  def __call__(self, keys: jax.Array, queries: jax.Array, valid: jax.Array, *,
               train: bool) -> jax.Array:
    matrix = self.param('attention_mat', nn.initializers.truncated_normal(self.init_std),
                        (keys.shape[-1], queries.shape[-1]))
    k = keys @ matrix
    logits = FCN(self.layer_sizes, self.dropout, name='fcn')(
        (k, queries, k * queries), train=train, difference=True)
    return masked_softmax(logits, valid)


class AttentionPooling(nn.Module):
  """Eq. 1, the code's `_attention`: `x` `[B, L, E]`, `valid` `[B, L]` -> `Σ_j α_j x_j`
  `[B, E]`, `α = softmax_j((x_j W) · q)` over the real behaviors."""
  init_std: float

  @nn.compact
  def __call__(self, x: jax.Array, valid: jax.Array) -> jax.Array:
    init = nn.initializers.truncated_normal(self.init_std)
    matrix = self.param('attention_mat', init, (x.shape[-1], x.shape[-1]))
    query = self.param('query', init, (x.shape[-1],))
    weights = masked_softmax((x @ matrix) @ query, valid)
    return jnp.einsum('bl,ble->be', weights, x)


class LSTM(nn.Module):
  """Eq. 5: the code's LSTM cell without its time gates over left-padded `x` `[B, L, E]`
  (`valid` `[B, L]`) -> states `[B, L, H]`. A padding step keeps the (zero) state, so the
  states after the padding are those of the unpadded sequence."""
  features: int

  @nn.compact
  def __call__(self, x: jax.Array, valid: jax.Array) -> jax.Array:
    size = self.features
    kernel = self.param('kernel', nn.initializers.xavier_uniform(),
                        (x.shape[-1] + size, 4 * size))
    bias = self.param('bias', nn.initializers.zeros, (4 * size,))

    def step(carry, inputs):
      c, h = carry
      x_t, valid_t = inputs
      i, j, f, o = jnp.split(jnp.concatenate([x_t, h], -1) @ kernel + bias, 4, axis=-1)
      new_c = jax.nn.sigmoid(f + 1.0) * c + jax.nn.sigmoid(i) * jnp.tanh(j)
      new_h = jax.nn.sigmoid(o) * jnp.tanh(new_c)
      c, h = jnp.where(valid_t, new_c, c), jnp.where(valid_t, new_h, h)
      return (c, h), h

    zeros = jnp.zeros((x.shape[0], size), x.dtype)
    _, states = jax.lax.scan(step, (zeros, zeros),
                             (x.transpose(1, 0, 2), valid.T[..., None]))
    return states.transpose(1, 0, 2)


class CandidateScorer(nn.Module):
  """Scoring, evaluation and training shared by A2SVD, SLi-Rec, SURGE and MIMN (their base class,
  with no fields of its own). A model defines `context(inputs, *, train)` (all that does not
  depend on the candidate, a dict holding `items` `[B, L]`, and `users` `[B]` when it
  reads them) and `score(context, candidates, *, train)` (candidate embeddings `[B or 1, C,
  E]` -> `(logits [B, C], user vectors [B, C, E])`), the `item_embed` table, the fields
  `score_chunk`, `embed_l2`, `layer_l2`, `init_std` and its registered name `NAME` (for error
  messages); `context_penalty` adds a term of its own to the training loss (MIMN's)."""
  NAME: ClassVar[str] = ''

  def check_common(self, name: str, length: int) -> None:
    for field in ('layer_sizes', 'att_fcn_layer_sizes'):
      sizes = getattr(self, field, ())
      if any(size < 1 for size in sizes):
        raise ConfigError(f'{name} {field} must hold positive widths, not {sizes}')
    if self.hidden < 1:
      raise ConfigError(f'{name} hidden must be at least 1, not {self.hidden}')
    if not 0.0 <= self.dropout < 1.0:
      raise ConfigError(f'{name} dropout must lie in [0, 1), not {self.dropout}')
    if self.embed_l2 < 0 or self.layer_l2 < 0:
      raise ConfigError(f'{name} embed_l2 and layer_l2 must be >= 0')
    if self.score_chunk < 1:
      raise ConfigError(f'{name} score_chunk must be at least 1, not {self.score_chunk}')
    if self.init_std <= 0:
      raise ConfigError(f'{name} init_std must be > 0, not {self.init_std}')
    if length > self.max_len:
      raise ConfigError(f'{name} got sequences of length {length} > max_len {self.max_len}')

  def __call__(self, inputs: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
    """`inputs` `[B, L, F]` -> hidden `[B, 1, E]` (the user vector with the latest behavior
    as the candidate), item table `[V, E]`."""
    context = self.context(inputs, train=train)
    latest = context['items'][:, -1:]  # [B, 1]; left-padded: the last column is the latest.
    _, user = self.score(context, self.item_embed[latest], train=train)
    return user, self.item_embed

  def score_candidates(self, inputs: jax.Array, candidates: jax.Array) -> jax.Array:
    """`[B, C]` logits of the items `candidates` `[B, C]` after `inputs` (evaluation mode)."""
    context = self.context(inputs, train=False)
    return self.score(context, self.item_embed[candidates], train=False)[0]

  def score_items(self, inputs: jax.Array) -> jax.Array:
    """`[B, V]` logits of every item after `inputs` `[B, L, F]` (evaluation mode), the
    catalogue in chunks of `max(1, score_chunk // B)` items."""
    context = self.context(inputs, train=False)
    batch, num_items = context['items'].shape[0], self.vocab_sizes[0]
    chunk = min(max(1, self.score_chunk // batch), num_items)
    num_chunks = -(-num_items // chunk)
    ids = jnp.minimum(jnp.arange(num_chunks * chunk), num_items - 1).reshape(num_chunks, chunk)
    scores = jax.lax.map(
        lambda chunk_ids: self.score(context, self.item_embed[chunk_ids][None], train=False)[0],
        ids)  # [chunks, B, chunk]; evaluation only: no variables created, no RNG drawn.
    return scores.transpose(1, 0, 2).reshape(batch, -1)[:, :num_items]

  def regularisation(self, touched: dict[str, jax.Array]) -> jax.Array:
    """`embed_l2 * ½ Σ |e|²` over the rows `touched[table]` of each embedding table plus
    `layer_l2 * ½ Σ θ²` over every other parameter."""
    params = self.variables['params']
    total = jnp.zeros(())
    if self.embed_l2:
      for name, ids in touched.items():
        total += self.embed_l2 * touched_rows_l2(params[name], ids)
    if self.layer_l2:
      layers = {k: v for k, v in params.items() if k not in EMBEDDINGS}
      squares = [jnp.sum(v * v) for v in jax.tree_util.tree_leaves(layers)]
      total += self.layer_l2 * 0.5 * sum(squares)
    return total

  def negatives(self, targets: jax.Array, num_negatives: int) -> jax.Array:
    """`[B, num_negatives]` uniform items other than each target `[B]`, from the 'negatives'
    RNG stream (the first draw of `training_loss`)."""
    return uniform_negatives(self.make_rng('negatives'), targets, num_negatives,
                             self.vocab_sizes[0])

  def training_loss(self, batch: dict[str, Any], *, loss: str,
                    num_negatives: int) -> jax.Array:
    """The target against `num_negatives` uniform negatives by `loss`, plus the code's L2."""
    name = self.NAME
    if loss not in LOSSES:
      raise ConfigError(f'{name} scores the target and sampled negatives with its network: '
                        f'config.train.loss must be one of {list(LOSSES)} (the code\'s is '
                        f"'sampled_softmax'), not {loss!r}")
    if num_negatives < 1:
      raise ConfigError(f'{name} needs config.train.num_negatives >= 1')
    targets = jnp.asarray(batch['targets'])
    if targets.ndim != 1:
      raise ConfigError(f"{name} scores one target per row: set config.train.targets='prefix'")
    negatives = self.negatives(targets, num_negatives)
    candidates = jnp.concatenate([targets[:, None], negatives], axis=1)  # [B, 1 + n]
    context = self.context(batch['inputs'], train=True)
    logits, _ = self.score(context, self.item_embed[candidates], train=True)
    touched = {'item_embed': jnp.concatenate([context['items'], candidates], axis=1)}
    if 'users' in context:
      touched['user_embed'] = context['users']
    return (candidate_loss(logits, targets, loss) + self.regularisation(touched)
            + self.context_penalty(context, targets))

  def context_penalty(self, context: dict[str, jax.Array], targets: jax.Array) -> jax.Array:
    """A model's own training term on its `context` (0 here; rows whose target is 0 are
    filler)."""
    del context, targets
    return jnp.zeros(())


@register('a2svd')
class A2SVD(CandidateScorer):
  vocab_sizes: tuple[int, ...]
  max_len: int
  hidden: int = 40  # E, the code's 32 (item) + 8 (category).
  dropout: float = 0.3  # On the hidden MLP layers.
  layer_sizes: tuple[int, ...] = (100, 64)
  use_user: bool = False  # True: u^l += p_u (SVD++'s user factor; the code has none).
  user_field: int = 1
  embed_l2: float = 1e-4
  layer_l2: float = 1e-4
  init_std: float = 0.01
  score_chunk: int = 1 << 20  # (row, item) pairs scored at once by score_items.

  causal: ClassVar[bool] = False
  NAME: ClassVar[str] = 'a2svd'

  def setup(self):
    init = nn.initializers.truncated_normal(self.init_std)
    self.item_embed = jnp.asarray(self.param('item_embed', init,
                                             (self.vocab_sizes[0], self.hidden)))
    if self.use_user:  # An empty lookup first: user_ids' check of the field, before its size.
      user_ids(jnp.zeros((0, 0, len(self.vocab_sizes)), jnp.int32), self.vocab_sizes,
               self.user_field, self.NAME)
      self.user_embed = jnp.asarray(self.param(
          'user_embed', init, (self.vocab_sizes[self.user_field], self.hidden)))
    self.pooling = AttentionPooling(self.init_std)
    self.output = FCN(self.layer_sizes, self.dropout)

  def long_term(self, inputs: jax.Array) -> dict[str, jax.Array]:
    """Eq. 1-2 on `inputs` `[B, L, F]` (L <= max_len): the context dict."""
    inputs = jnp.asarray(inputs)
    self.check_common(self.NAME, inputs.shape[1])
    items = inputs[..., 0]
    valid = items > 0
    x = self.item_embed[items] * valid[..., None]
    context = dict(items=items, valid=valid, x=x, long=self.pooling(x, valid))
    if self.use_user:
      users = user_ids(inputs, self.vocab_sizes, self.user_field, self.NAME)
      context['users'] = users.max(axis=1)
      users = context['users']
      context['long'] = context['long'] + self.user_embed[users] * (users > 0)[:, None]
    return context

  def context(self, inputs: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    del train
    return self.long_term(inputs)

  def score(self, context: dict[str, jax.Array], candidates: jax.Array, *,
            train: bool) -> tuple[jax.Array, jax.Array]:
    """Eq. 3: candidates `[B or 1, C, E]` -> logits `[B, C]`, user vectors `[B, C, E]`."""
    user = context['long'][:, None]  # [B, 1, E]
    logits = self.output((user, candidates), train=train)
    shape = (user.shape[0], candidates.shape[1])
    return jnp.broadcast_to(logits, shape), jnp.broadcast_to(user, (*shape, self.hidden))


@register('sli_rec')
class SLiRec(A2SVD):
  att_fcn_layer_sizes: tuple[int, ...] = (80, 40)
  score_chunk: int = 1 << 14

  NAME: ClassVar[str] = 'sli_rec'

  def setup(self):
    super().setup()
    self.lstm = LSTM(self.hidden)
    self.attention = TargetAttention(self.att_fcn_layer_sizes, self.dropout, self.init_std)
    self.fusion = FCN(self.att_fcn_layer_sizes, self.dropout)

  def context(self, inputs: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    del train
    context = self.long_term(inputs)
    context['states'] = self.lstm(context['x'], context['valid'])  # Eq. 5
    return context

  def score(self, context: dict[str, jax.Array], candidates: jax.Array, *,
            train: bool) -> tuple[jax.Array, jax.Array]:
    """Eq. 6-8: candidates `[B or 1, C, E]` -> logits `[B, C]`, user vectors `[B, C, E]`."""
    states, valid = context['states'], context['valid']
    weights = self.attention(states[:, None], candidates[:, :, None], valid[:, None],
                             train=train)  # Eq. 6, [B, C, L]
    short = jnp.einsum('bcl,ble->bce', weights, states)
    long = context['long'][:, None]  # [B, 1, E]
    alpha = jax.nn.sigmoid(self.fusion((candidates, long, short), train=train))[..., None]
    user = alpha * long + (1.0 - alpha) * short  # Eq. 7
    return self.output((user, candidates), train=train), user  # Eq. 8
