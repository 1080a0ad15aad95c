"""SURGE (Chang et al., "Sequential Recommendation with Graph Neural Networks", SIGIR 2021),
as its authors' code (SIGIR21-SURGE, merged into Microsoft Recommenders as
`recommenders/models/deeprec/models/sequential/surge.py`) builds it, with that code's settings:
one metric head, one attention head, one pooling layer, shared attention weights.

Embeddings: behaviors `x_1..x_L` `[B, L, E]` (zero at padding) and candidates `e_t` `[B, C,
E]` from one item table of width E (`hidden`).

Interest graph construction (metric learning):
- Eq. 1-2, a weighted cosine similarity per metric head h (`metric_heads`, 1):
  `M^h_ij = cos(w_h ⊙ x_i, w_h ⊙ x_j)`, `w_h` `[E]`; each row is min-max normalised over the
  real behaviors, `(M_ij - min_j M_ij) / (max_j M_ij - min_j M_ij)` (0 where the row is
  constant, e.g. a single behavior: the code divides by zero there), and the heads averaged:
  `S` `[B, L, L]`, zero in padding rows and columns;
- Eq. 3, relative-rank sparsification: of the `n` nonzero entries of S, the edges kept are
  those above the value at rank `ceil(ε n)` (0-based, `relative_threshold` ε = 0.5):
  `A_ij = [S_ij > S_(ceil(ε n))]`. A reaches the model through this hard threshold only, so,
  as in the code, `w_h` gets no gradient from the data: it keeps its initial (Glorot-uniform)
  draw but for the L2 term's decay.

Interest fusion (graph attentive convolution), with `Â = A` off the diagonal plus self-loops on
every node, `D_i = Σ_j Â_ij` and `Ã = (D^1/2 + 10⁻⁷)^-1 Â (D^1/2 + 10⁻⁷)^-1` (the code's):
- Eq. 4, cluster-aware attention: the cluster embedding `x^c_j = (Ã² X)_j`, and
  `α_j = softmax_j(FCN_1([k_j ; x^c_j ; k_j - x^c_j ; k_j ⊙ x^c_j]))`, `k_j = x_j W_1`;
- Eq. 5, query-aware attention: `β_j = softmax_j(FCN_2([k'_j ; e_t ; k'_j - e_t ; k'_j ⊙
  e_t]))`, `k'_j = x_j W_2` (both the code's `_attention_fcn`, `att_fcn_layer_sizes` (80, 40),
  softmaxes over the real behaviors);
- Eq. 6, `E_ij = softmax_{j: Â_ij = 1}(LeakyReLU(α_j + β_i))` (the code adds node j's
  cluster score to node i's query score; LeakyReLU slope 0.2);
- Eq. 7, `h_i = LeakyReLU(W (Σ_j E_ij x_j) + x_i)`, `W` `[E, E]` without bias: `H` `[B, C, L,
  E]`, one per candidate (β depends on it).

Interest extraction (graph pooling):
- Eq. 8, cluster fitness: α and β of Eq. 4-5 again, with the same weights, on H (clusters
  `Ã² H`), and `γ_j = softmax_j(α_j + β_j)` over the real behaviors;
- Eq. 9, the `min(n, pool_length)` nodes of highest γ are kept (n real behaviors,
  `pool_length` the code's 30): those above the value at rank `min(n, pool_length)` (0 past
  the last node; the code adds 10⁻⁷ to that value, and reads past the end of the row when
  `n = L <= pool_length`);
- Eq. 10, the readout `g = Σ_{j kept} γ_j h_j` `[B, C, E]`. The code also pools the
  adjacency for a next pooling layer, which one layer never reads: not computed.

Prediction:
- Eq. 11, the kept nodes in their order form the reduced sequence; the code sorts them to
  the front and runs DIEN's AUGRU (`VecAttGRUCell`, width E) over them with attention
  `a_j = softmax_j(FCN_3([k''_j ; e_t ; k''_j - e_t ; k''_j ⊙ e_t]))` over the kept nodes:
  `r, u = σ(W_g [h_j ; s] + b_g)` (b_g starts at 1), `c = tanh(W_c [h_j ; r ⊙ s] + b_c)`,
  `u' = (1 - a_j) u`, `s ← u' s + (1 - u') c`. Here the AUGRU runs over all L positions
  and a node not kept leaves the state unchanged: the same final state `s` `[B, C, E]`;
- Eq. 12, `ŷ = FCN([s ; g ; e_t ; g ⊙ e_t])` (`layer_sizes` (100, 64)).

Training, evaluation, regularisation, initialisation, dropout, the missing category
embedding and the attention MLPs' folded difference block are `sli_rec.py`'s (see its doc):
the target and `num_negatives` uniform negatives (the code's softmax over 1 + 4), scored by
the network above. Without the code's batch normalisation the MLPs see tiny inputs at the
start (N(0, 0.01) embeddings, an AUGRU state near 0), while Adam moves their zero-started
biases by the learning rate per step: with very narrow MLPs (5 units) and no dropout, every
ReLU of the output MLP died within 10 steps and the loss stayed at log(1 + n) on a fixed
test batch. The code's widths (100, 64) train there without dropout
(`test_trains_without_dropout_at_the_codes_widths`).

Everything from Eq. 5 on depends on the candidate: `score_items` runs Eq. 5-12 for every
(row, item), in chunks of about `score_chunk` pairs (memory about
`score_chunk * L * (L + 4 * max(att_fcn_layer_sizes))` floats). That is a graph network per
pair: ranking all V = 11,925 items (Toys) for 64 rows of L = 100 (E = 16) took 144 s on this
loaded 2-core CPU, against 2.1 s for 101 candidates through `score_candidates`, which is
what sampled protocols (`grouped:100`) call; a training step of 256 targets with 4 negatives
each, 2.9 s.

`__call__` keeps the model contract for tools: hidden `[B, 1, E]` is the readout g with the
latest behavior as the candidate, which no evaluation uses; it runs the whole network so that
`init` creates every parameter. Inputs may be narrower than `max_len` (no weight is per
position, and padding is masked throughout, so the scores are those of the input left-padded
to it; the cost falls with the width); wider ones are an error. Not causal: `T = 1`.

Shapes: inputs `[B, L, F]` -> x `[B, L, E]`, S, A `[B, L, L]`; candidates `[B or 1, C, E]` ->
E `[B, C, L, L]` -> H `[B, C, L, E]` -> γ `[B, C, L]` -> s, g `[B, C, E]` -> logits `[B, C]`.
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from pmix_jax.errors import ConfigError
from pmix_jax.models import register
from pmix_jax.models.sli_rec import FCN, CandidateScorer, TargetAttention, masked_softmax

LEAKY_SLOPE = 0.2  # tf.nn.leaky_relu's.
DEGREE_EPS = 1e-7  # The code's K.epsilon() in Ã.


def similarity(x: jax.Array, valid: jax.Array, weights: jax.Array) -> jax.Array:
  """Eq. 1-2: `x` `[B, L, E]`, `valid` `[B, L]`, head weights `[H, E]` -> `S` `[B, L, L]`."""
  xw = x[:, None] * weights[None, :, None, :]  # [B, H, L, E]
  xw = xw * jax.lax.rsqrt(jnp.maximum(jnp.sum(xw * xw, -1, keepdims=True), 1e-12))
  cosine = jnp.einsum('bhie,bhje->bhij', xw, xw)
  columns = valid[:, None, None, :]
  low = jnp.min(jnp.where(columns, cosine, jnp.inf), axis=-1, keepdims=True)
  high = jnp.max(jnp.where(columns, cosine, -jnp.inf), axis=-1, keepdims=True)
  span = high - low  # inf - inf = nan in empty rows: masked below with the rest.
  spread = jnp.isfinite(span) & (span > 0)
  scaled = jnp.where(spread, (cosine - jnp.where(spread, low, 0.0))
                     / jnp.where(spread, span, 1.0), 0.0)
  pair = valid[:, :, None] & valid[:, None, :]
  return jnp.where(pair, scaled.mean(axis=1), 0.0)


def sparsify(s: jax.Array, ratio: float) -> jax.Array:
  """Eq. 3: `S` `[B, L, L]` -> `A` (bool): the entries above the value at rank
  `ceil(ratio * n)` of the row's n nonzero entries, in descending order from rank 0."""
  flat = s.reshape(s.shape[0], -1)
  ranked = -jnp.sort(-flat, axis=-1)
  edges = jnp.count_nonzero(flat, axis=-1)
  rank = jnp.minimum(jnp.ceil(edges * ratio).astype(jnp.int32), flat.shape[-1] - 1)
  threshold = jnp.take_along_axis(ranked, rank[:, None], axis=-1)
  return s > threshold[:, :, None]


def normalised_adjacency(a: jax.Array) -> tuple[jax.Array, jax.Array]:
  """`A` `[B, L, L]` -> `(Â, Ã)`: A with self-loops on every node (float) and its symmetric
  normalisation `Â_ij / ((√D_i + ε)(√D_j + ε))`."""
  eye = jnp.eye(a.shape[-1], dtype=bool)
  loops = (a | eye).astype(jnp.float32)
  root = jnp.sqrt(loops.sum(-1)) + DEGREE_EPS
  return loops, loops / root[:, :, None] / root[:, None, :]


def top_nodes(scores: jax.Array, counts: jax.Array) -> jax.Array:
  """Eq. 9: `scores` `[B, C, L]` (0 at padding), `counts` `[B]` -> the nodes (bool) above the
  value at rank `counts` of their row in descending order (0 past the end)."""
  ranked = -jnp.sort(-scores, axis=-1)
  ranked = jnp.concatenate([ranked, jnp.zeros_like(ranked[..., :1])], axis=-1)
  index = jnp.broadcast_to(counts[:, None, None], (*scores.shape[:-1], 1))
  return scores > jnp.take_along_axis(ranked, index, axis=-1)


class AUGRU(nn.Module):
  """Eq. 11: DIEN's AUGRU over `x` `[..., L, E]` with attention `[..., L]`; positions not
  `valid` `[..., L]` keep the state. -> the final state `[..., H]`."""
  features: int

  @nn.compact
  def __call__(self, x: jax.Array, attention: jax.Array, valid: jax.Array) -> jax.Array:
    size, lead, length = self.features, x.shape[:-2], x.shape[-2]
    glorot = nn.initializers.xavier_uniform()
    w_gates = self.param('gates_kernel', glorot, (x.shape[-1] + size, 2 * size))
    b_gates = self.param('gates_bias', nn.initializers.ones, (2 * size,))
    w_candidate = self.param('candidate_kernel', glorot, (x.shape[-1] + size, size))
    b_candidate = self.param('candidate_bias', nn.initializers.zeros, (size,))

    def step(h, inputs):
      x_t, a_t, valid_t = inputs
      r, u = jnp.split(jax.nn.sigmoid(jnp.concatenate([x_t, h], -1) @ w_gates + b_gates), 2,
                       axis=-1)
      c = jnp.tanh(jnp.concatenate([x_t, r * h], -1) @ w_candidate + b_candidate)
      u = (1.0 - a_t) * u
      return jnp.where(valid_t, u * h + (1.0 - u) * c, h), None

    time_major = lambda v: jnp.moveaxis(v.reshape(-1, length, *v.shape[len(lead) + 1:]), 1, 0)
    h0 = jnp.zeros((x.size // (length * x.shape[-1]), size), x.dtype)
    h, _ = jax.lax.scan(step, h0, (time_major(x), time_major(attention[..., None]),
                                   time_major(valid[..., None])))
    return h.reshape(*lead, size)


@register('surge')
class SURGE(CandidateScorer):
  vocab_sizes: tuple[int, ...]
  max_len: int
  hidden: int = 40  # E, the code's 32 (item) + 8 (category); also the AUGRU's width.
  dropout: float = 0.3  # On the hidden MLP layers.
  layer_sizes: tuple[int, ...] = (100, 64)  # The prediction MLP.
  att_fcn_layer_sizes: tuple[int, ...] = (80, 40)  # The attention MLPs.
  relative_threshold: float = 0.5  # ε, the share of the similarity graph's edges kept.
  pool_length: int = 30  # Nodes kept by the pooling (the code's Taobao setting).
  metric_heads: int = 1
  embed_l2: float = 1e-4
  layer_l2: float = 1e-4
  init_std: float = 0.01
  score_chunk: int = 1 << 11  # (row, item) pairs scored at once by score_items.

  causal: ClassVar[bool] = False
  NAME: ClassVar[str] = 'surge'

  def setup(self):
    self._check_config(0)
    self.item_embed = jnp.asarray(self.param(
        'item_embed', nn.initializers.truncated_normal(self.init_std),
        (self.vocab_sizes[0], self.hidden)))
    # The code's dense layer on a constant 1: a Glorot-uniform [1, E] kernel per head.
    self.metric_weights = self.param('metric_weights',
                                     nn.initializers.xavier_uniform(batch_axis=(0,)),
                                     (self.metric_heads, 1, self.hidden))
    attention = lambda: TargetAttention(self.att_fcn_layer_sizes, self.dropout, self.init_std)
    self.cluster_attention = attention()  # Eq. 4 (and 8)
    self.query_attention = attention()  # Eq. 5 (and 8)
    self.gru_attention = attention()  # Eq. 11
    self.fusion = nn.Dense(self.hidden, use_bias=False,
                           kernel_init=nn.initializers.xavier_uniform())  # Eq. 7
    self.augru = AUGRU(self.hidden)
    self.output = FCN(self.layer_sizes, self.dropout)

  def _check_config(self, length: int) -> None:
    self.check_common(self.NAME, length)
    if not 0.0 < self.relative_threshold <= 1.0:
      raise ConfigError(f'surge relative_threshold must lie in (0, 1], not '
                        f'{self.relative_threshold}')
    if self.pool_length < 1 or self.metric_heads < 1:
      raise ConfigError('surge pool_length and metric_heads must be at least 1')

  def context(self, inputs: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    """The graph of `inputs` `[B, L, F]` (L <= max_len) and its cluster-aware
    attention (Eq. 1-4), which do not depend on the candidate. Sows S and A."""
    inputs = jnp.asarray(inputs)
    self._check_config(inputs.shape[1])
    items = inputs[..., 0]
    valid = items > 0
    x = self.item_embed[items] * valid[..., None]
    s = similarity(jax.lax.stop_gradient(x), valid, self.metric_weights[:, 0])  # Eq. 1-2
    a = sparsify(s, self.relative_threshold)  # Eq. 3
    self.sow('intermediates', 'similarity', s)
    self.sow('intermediates', 'adjacency', a)
    loops, norm = normalised_adjacency(a)
    two_hops = norm @ norm  # Ã²
    cluster = self.cluster_attention(x, two_hops @ x, valid, train=train)  # Eq. 4, α [B, L]
    return dict(items=items, valid=valid, x=x, loops=loops, two_hops=two_hops,
                cluster=cluster, keep=jnp.minimum(valid.sum(-1), self.pool_length))

  def score(self, context: dict[str, jax.Array], candidates: jax.Array, *,
            train: bool) -> tuple[jax.Array, jax.Array]:
    """Eq. 5-12: candidates `[B or 1, C, E]` -> logits `[B, C]`, readouts `[B, C, E]`."""
    x, valid = context['x'][:, None], context['valid'][:, None]  # [B, 1, L, E], [B, 1, L]
    query = candidates[:, :, None]  # [B or 1, C, 1, E]
    beta = self.query_attention(x, query, valid, train=train)  # Eq. 5, [B, C, L]
    edges = nn.leaky_relu(context['cluster'][:, None, None, :] + beta[..., None], LEAKY_SLOPE)
    edges = masked_softmax(edges, context['loops'][:, None] > 0)  # Eq. 6, [B, C, L, L]
    h = nn.leaky_relu(self.fusion(edges @ x) + x, LEAKY_SLOPE)  # Eq. 7, [B, C, L, E]
    alpha = self.cluster_attention(h, context['two_hops'][:, None] @ h, valid, train=train)
    beta = self.query_attention(h, query, valid, train=train)
    fitness = masked_softmax(alpha + beta, valid) * valid  # Eq. 8, γ
    kept = top_nodes(fitness, context['keep'])  # Eq. 9
    readout = jnp.einsum('bcl,bcle->bce', fitness * kept, h)  # Eq. 10
    attention = self.gru_attention(h, query, kept, train=train)
    state = self.augru(h, attention, kept)  # Eq. 11
    self.sow('intermediates', 'fitness', fitness)
    self.sow('intermediates', 'kept', kept)
    logits = self.output((state, readout, candidates, readout * candidates), train=train)
    return logits, readout  # Eq. 12
