"""MIMN, the Multi-channel user Interest Memory Network (Pi et al., "Practice on Long
Sequential User Behavior Modeling for Click-Through Rate Prediction", KDD 2019), as its
authors' TensorFlow code (UIC-Paper/MIMN: `script/mimn.py`'s `MIMNCell`, `script/model.py`'s
`Model_MIMN`) builds it, with that code's settings: 4 memory slots, one read and one write
head, shift range 1, sharpening 2, parameters clipped to ±20, memory induction over the
top-1 slot, and the full model of the README (`--mem_induction 1 --util_reg 1`).

Embeddings: behaviors `x_1..x_L` `[B, L, E]` (zero at padding) and candidates `e_t` `[B, C,
E]` from one item table of width E (`hidden`). The memory slots are E wide as well: the
code's `memory_vector_dim` is its behavior width (16-wide item and category embeddings,
concatenated), and its prediction multiplies a memory readout by the candidate.

The basic NTM memory unit (the left sub-network of the paper's Figure 3, the state its UIC
server keeps per user), run over the behaviors, oldest first. The state
after step t holds the controller `h_t` `[B, H]` (`controller_units`), the last read vector
`r_t` `[B, E]`, the memory `M_t` `[B, m, E]` (m = `memory_size`), the utilisation `g_t` `[B,
m]` and the MIU channels `S_t` `[B, m, E]`; at step t:
- the controller, TF's GRUCell (gates `r, u = σ([v ; h] W_g + b_g)`, b_g starting at 1, `c =
  tanh([v ; r ⊙ h] W_c + b_c)`, `h ← u h + (1 - u) c`), reads `v = [x_t ; r_{t-1}]`;
- the heads' parameters, `clip(W_p [h_t ; sg(g_{t-1}) / 400] + b_p, ±20)` (the usage term
  with `utilisation_regularisation` only; sg = stop-gradient), hold per head (read, then
  write) a key `k = tanh(·)` `[E]`, a strength `β = 2 (softplus(·) + 1)`, an interpolation
  gate that the code never reads, three shift logits and a sharpening `γ = 4 (softplus(·) +
  1)`, then an erase `e = σ(·)` and an add `a = tanh(·)` `[E]` for the write head;
- content addressing (the code's `addressing`; the paper's memory read): `K_i = ½ (cos(k,
  K^mem_i) + cos(k, M_{t-1,i}))`, `cos(u, v) = u·v / (|u||v| + 10⁻⁸)`, with learnt slot keys
  `K^mem = tanh(P)` `[m, E]` (P ~ N(0, 0.5)), and `w = softmax_i(β K_i)`;
- memory utilisation regularisation (the paper's, `utilisation_regularisation`, the
  code's `util_reg`): the write weights are re-balanced by a circular shift and sharpening
  (the code's `capacity_overflow`): `w̃_i = Σ_j w_j s_{(i - j) mod m}` with `s = softmax` of
  the three shift logits at offsets 0, +1, -1, then `w ← w̃^γ / Σ w̃^γ` (computed as
  `softmax(γ log w̃)`). The usage `g_t = g_{t-1} + overflow(sg(w), s, γ)` applies the shift
  and sharpening a second time to the already re-balanced weight, as the code does; the
  controller sees `sg(g) / 400` (the code's `max_q`), so that the shift and sharpening that
  re-balance the writes depend on the usage; and `utilisation_weight` times the mean over
  rows of `var_i g_L,i` is added to the training loss (the code's `capacity_loss`, `0.001 /
  (m B)` with its 4 slots and Amazon batch of 128 folded into the default weight);
- read: `r_t = Σ_i w^r_i M_{t-1,i}` (from the memory before this step's write);
- memory induction unit (MIU, `memory_induction`, the code's `mem_induction=1`):
  the `induction_top_k` slots of highest read weight (the code's k = 1) update their channel,
  one GRU of width E shared by every channel (TF's GRUCell again): `S_i ← GRU([x_t ;
  sg(M_{t-1,i})], S_i)`; the other channels keep their state;
- write (erase, then add): `M_t = M_{t-1} ⊙ (1 - w^w eᵀ) + w^w aᵀ`.
A padding position leaves the whole state unchanged. The initial state is the code's: `h_0 =
0`, `r_0 = tanh(ρ)` with a learnt ρ `[E]` (Glorot uniform, the code's `learned_init`), `M_0 =
tanh(N(0, 10⁻⁵))`, a fixed draw (the code's non-trainable `init_M`; here a constant drawn
once from numpy's seed 0), `g_0 = 0`, `S_0 = 0`.

Prediction (the code's `Model_MIMN` with `Mem_Induction == 1`): the cell runs once more with
the candidate as its input, `e_t` in place of `x_t`, from the final state: `h' = GRU([e_t ;
r_L], h_L)`, the read head addresses `M_L` with its parameters from `[h' ; sg(g_L) / 400]`,
`r'` is the read vector and `o = clip(W_o [h' ; r'] + b_o, ±20)` `[B, C, H]` (the code's
`o2o`, the cell's output; width H as its `output_dim`). The MIU channels are read by target
attention, `c = Σ_i softmax_i(FCN_att([k_i ; e_t ; k_i - e_t ; k_i ⊙ e_t])) S_L,i` over the
m channels, `k_i = S_L,i W` (`att_fcn_layer_sizes` (80, 40)). The logit is `ŷ = FCN([e_t ;
Σ_j x_j ; o ; c ; m̄ ⊙ e_t])` (`layer_sizes`, the code's (200, 80)), the code's inputs in its
order: the candidate, the sum-pooled behaviors, the readout, the channels' attention and the
mean memory `m̄ = mean_i Σ_t sg(w^w_t,i) a_t`. The write weights sum to 1 over the slots, so
`m̄ = (1/m) Σ_t a_t` over the real behaviors, which is how it is computed here. Without
`memory_induction` the term c and the channel GRU are left out, as the code's
`Mem_Induction == 0`.

Differences from the code, and why:
- the MIU's output: the code's channels return their GRU output only at the step that
  updates them and a never-updated zero otherwise (its `channel_rnn_output` is never
  written), so the attention sees the slot updated by the last behavior and m - 1 zero
  vectors. We attend over the channels' final states `S_L` `[B, m, E]`, the multi-channel
  memory that the paper's MIU describes (a channel never selected stays 0);
- padding: the code's Amazon script runs the padding (zero embeddings) through the cell,
  and its Taobao script (`mask_flag`) resets the controller, memory and channels to their
  initial values there but lets the read vector and the usage run on; here a padding
  position changes nothing, so that scores do not depend on the padding;
- the MLPs are `sli_rec.FCN` (ReLU, LeCun-normal kernels, no batch normalisation, one
  output logit) where the code has batch normalisation, PReLU and a two-way softmax (the
  same as a logit of their difference); the channel attention is `sli_rec.TargetAttention`
  (ReLU, a key projection W) where the code's `din_attention` has sigmoid hidden layers and
  no projection. Dropout (`dropout`, none in the code) on their hidden layers;
- no category embedding (see `sli_rec.py`): E = `hidden` stands for the code's 32 = 16 + 16;
- the sharpening is `softmax(γ log w̃)` (`w̃` floored at 10⁻³⁰), the code's `w̃^γ / Σ w̃^γ`
  without its underflow; vector norms are floored at 10⁻¹⁵ so that a zero vector has a
  gradient; the shift is `jnp.roll` over the slots, the code's circulant matrix (which needs
  m >= 3; with m = 2 both offsets land on the other slot, m = 1 leaves w unchanged);
- training: the code trains a click model on logged clicks and non-clicks (its 2-way
  softmax, Adam 1e-3, batch 128, no L2); here, like SURGE and SLi-Rec (`sli_rec.py`), the
  target is scored against `num_negatives` uniform negatives (`training_loss`, the table's
  softmax over 1 + 4) with `CandidateScorer`'s regularisation (`embed_l2`, `layer_l2`; 0 by
  default, as the code has none) plus the utilisation term above. Embeddings truncated
  N(0, `init_std`) (the code's Glorot-uniform table has std about 0.013 for 12k items); the
  heads' and readout kernels truncated normal of std `1/√H` and `1/√(H + E)` (the code's
  `create_linear_initializer`: the heads' fan counts H without the usage), zero biases,
  Glorot-uniform GRU kernels, as the code.

Cost: the recurrence (`context`) does not depend on the candidate and runs once per row, a
`jax.lax.scan` over the L positions; per candidate, one controller step, one addressing, an
attention over m channels and the MLP. Measured on this 2-core CPU while another job was
training (Toys size: V = 11,925 items, L = 100, E = 16, H = 32, m = 4, MLPs (200, 80) and
(80, 40), median of 5 after a warm-up): a training step of 256 targets with 4 negatives
each (gradient, clipping and Adam update) about 0.28 s; `score_candidates` for 64 rows ×
101 candidates about 0.035 s; `score_items` (all items) for 64 rows about 3 s.

`__call__` keeps the model contract for tools: hidden `[B, 1, E]` is the read vector `r'`
with the latest behavior as the candidate, which no evaluation uses; it runs the whole
network so that `init` creates every parameter. Inputs may be narrower than `max_len` (no
weight is per position, and a padding step leaves the state as it was, so the scores are
those of the input left-padded to it; the cost falls with the width); wider ones are an
error. Not causal: `T = 1`.

Shapes: inputs `[B, L, F]` -> x `[B, L, E]` -> state h `[B, H]`, r `[B, E]`, M, S `[B, m,
E]`, g `[B, m]`; candidates `[B or 1, C, E]` -> h' `[B, C, H]`, r' `[B, C, E]`, channel
attention `[B, C, m]` -> logits `[B, C]`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pmix_jax.errors import ConfigError
from pmix_jax.models import register
from pmix_jax.models.sli_rec import FCN, CandidateScorer, TargetAttention

CLIP = 20.0  # The code's clip_value, on the heads' parameters and the readout.
SHARPNESS = 2.0  # The code's sharp_value: β = 2 (softplus + 1), γ = 2 · 2 (softplus + 1).
USAGE_SCALE = 400.0  # The code's max_q: the controller sees the usage divided by it.
COSINE_EPS = 1e-8  # In the cosine similarity's denominator (the code's).
HEAD_EXTRA = 6  # Per head after the key: β, the (unused) gate, 3 shift logits, γ.
INITIAL_MEMORY_STD = 1e-5  # The code's init_M, N(0, 1e-5), not trained.


def gru_step(p: dict[str, jax.Array], inputs: Sequence[jax.Array],
             h: jax.Array) -> jax.Array:
  """TF's GRUCell on the concatenation of `inputs` (broadcasting against each other and `h`
  `[..., H]`; each multiplies its rows of the kernels) -> the new state `[..., H]`."""
  splits = np.cumsum([x.shape[-1] for x in inputs])
  gate_blocks = jnp.split(p['gates_kernel'], splits)  # The inputs' blocks, then h's.
  candidate_blocks = jnp.split(p['candidate_kernel'], splits)
  gates = h @ gate_blocks[-1] + p['gates_bias']
  candidate = p['candidate_bias']
  for x, gate_block, candidate_block in zip(inputs, gate_blocks, candidate_blocks):
    gates = gates + x @ gate_block
    candidate = candidate + x @ candidate_block
  r, u = jnp.split(jax.nn.sigmoid(gates), 2, axis=-1)
  c = jnp.tanh(candidate + (r * h) @ candidate_blocks[-1])
  return u * h + (1.0 - u) * c


def _norm(x: jax.Array) -> jax.Array:
  """`|x|` over the last axis (keeping it), floored at 1e-15 so that 0 has a gradient."""
  return jnp.sqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-30))


def cosine(key: jax.Array, memory: jax.Array) -> jax.Array:
  """The code's `cosine_similarity`: `key` `[..., E]`, `memory` `[..., m, E]` -> `[..., m]`."""
  inner = jnp.einsum('...e,...me->...m', key, memory)
  return inner / (_norm(memory)[..., 0] * _norm(key) + COSINE_EPS)


def content_weights(head: jax.Array, key_memory: jax.Array, memory: jax.Array) -> jax.Array:
  """Content addressing from a head's parameters `[..., E + 6]`: `softmax_i(β K_i)`, `K_i =
  ½ (cos(k, K^mem_i) + cos(k, M_i))`, `k = tanh(head[:E])`, `β = 2 (softplus(head[E]) + 1)`;
  `key_memory` `[m, E]`, `memory` `[..., m, E]` -> `[..., m]`."""
  size = memory.shape[-1]
  key = jnp.tanh(head[..., :size])
  beta = (jax.nn.softplus(head[..., size]) + 1.0) * SHARPNESS
  similarity = 0.5 * (cosine(key, key_memory) + cosine(key, memory))
  return jax.nn.softmax(beta[..., None] * similarity, axis=-1)


def shift_and_sharpen(w: jax.Array, head: jax.Array) -> jax.Array:
  """The code's `capacity_overflow` of weights `w` `[..., m]` with a head's parameters
  `[..., E + 6]`: the circular convolution with `s = softmax` of its shift logits (offsets 0,
  +1, -1), then the sharpening `w̃^γ / Σ w̃^γ`, `γ = 4 (softplus(head[-1]) + 1)`."""
  size = head.shape[-1] - HEAD_EXTRA
  shift = jax.nn.softmax(head[..., size + 2:size + 5], axis=-1)
  gamma = 2.0 * (jax.nn.softplus(head[..., -1]) + 1.0) * SHARPNESS
  shifted = (shift[..., :1] * w + shift[..., 1:2] * jnp.roll(w, 1, axis=-1)
             + shift[..., 2:] * jnp.roll(w, -1, axis=-1))
  return jax.nn.softmax(gamma[..., None] * jnp.log(jnp.maximum(shifted, 1e-30)), axis=-1)


def write(memory: jax.Array, w: jax.Array, erase: jax.Array, add: jax.Array) -> jax.Array:
  """`M ⊙ (1 - w eᵀ) + w aᵀ`: `memory` `[..., m, E]`, `w` `[..., m]`, `erase`, `add` `[...,
  E]`."""
  w = w[..., None]
  return memory * (1.0 - w * erase[..., None, :]) + w * add[..., None, :]


def read(memory: jax.Array, w: jax.Array) -> jax.Array:
  """`Σ_i w_i M_i`: `memory` `[..., m, E]`, `w` `[..., m]` -> `[..., E]`."""
  return jnp.einsum('...m,...me->...e', w, memory)


def top_slots(w: jax.Array, k: int) -> jax.Array:
  """The `k` slots of highest weight in `w` `[..., m]` (bool), the lower index first on ties."""
  _, index = jax.lax.top_k(w, k)
  return jax.nn.one_hot(index, w.shape[-1], dtype=jnp.int32).sum(-2) > 0


class GRUWeights(nn.Module):
  """TF GRUCell's parameters for `inputs` features and a state of `features`: Glorot-uniform
  kernels over `[inputs + features, ·]`, gate bias 1, candidate bias 0. Called without
  arguments, returns them (for `gru_step`, inside `jax.lax.scan`)."""
  inputs: int
  features: int

  @nn.compact
  def __call__(self) -> dict[str, jax.Array]:
    glorot = nn.initializers.xavier_uniform()
    rows = self.inputs + self.features
    return dict(
        gates_kernel=self.param('gates_kernel', glorot, (rows, 2 * self.features)),
        gates_bias=self.param('gates_bias', nn.initializers.ones, (2 * self.features,)),
        candidate_kernel=self.param('candidate_kernel', glorot, (rows, self.features)),
        candidate_bias=self.param('candidate_bias', nn.initializers.zeros, (self.features,)))


class LinearWeights(nn.Module):
  """A dense layer's kernel `[inputs, features]` (truncated N(0, `stddev`), the code's
  `create_linear_initializer`) and zero bias, returned as `(kernel, bias)`."""
  inputs: int
  features: int
  stddev: float

  @nn.compact
  def __call__(self) -> tuple[jax.Array, jax.Array]:
    kernel = self.param('kernel', nn.initializers.truncated_normal(self.stddev),
                        (self.inputs, self.features))
    return kernel, self.param('bias', nn.initializers.zeros, (self.features,))


def linear(weights: tuple[jax.Array, jax.Array], inputs: Sequence[jax.Array]) -> jax.Array:
  """`[inputs...] K + b` without building the concatenation (the inputs broadcast)."""
  kernel, bias = weights
  blocks = jnp.split(kernel, np.cumsum([x.shape[-1] for x in inputs])[:-1])
  out = bias
  for x, block in zip(inputs, blocks):
    out = out + x @ block
  return out


@register('mimn')
class MIMN(CandidateScorer):
  vocab_sizes: tuple[int, ...]
  max_len: int
  hidden: int = 32  # E, the code's 16 (item) + 16 (category); also the memory's width.
  dropout: float = 0.0  # On the hidden MLP layers (the code has none).
  layer_sizes: tuple[int, ...] = (200, 80)  # The prediction MLP.
  att_fcn_layer_sizes: tuple[int, ...] = (80, 40)  # The channel attention's MLP.
  memory_size: int = 4  # m, the memory slots (and MIU channels).
  controller_units: int = 32  # H, the controller GRU's width (the code's HIDDEN_SIZE).
  memory_induction: bool = True  # The MIU and its channel attention (the code's mem_induction).
  induction_top_k: int = 1  # Channels updated per behavior, by read weight.
  utilisation_regularisation: bool = True  # The code's util_reg.
  utilisation_weight: float = 0.001 / (4 * 128)  # On the usage variance (capacity_loss).
  embed_l2: float = 0.0
  layer_l2: float = 0.0
  init_std: float = 0.01
  score_chunk: int = 1 << 14  # (row, item) pairs scored at once by score_items.

  causal: ClassVar[bool] = False
  NAME: ClassVar[str] = 'mimn'

  def setup(self):
    self._check_config(0)
    size, units, slots = self.hidden, self.controller_units, self.memory_size
    self.item_embed = jnp.asarray(self.param(
        'item_embed', nn.initializers.truncated_normal(self.init_std),
        (self.vocab_sizes[0], size)))
    self.controller = GRUWeights(2 * size, units)  # Reads [x_t ; r_{t-1}].
    usage = slots if self.utilisation_regularisation else 0
    self.heads = LinearWeights(units + usage, 2 * (size + HEAD_EXTRA) + 2 * size,
                               1.0 / np.sqrt(units))  # The code's o2p.
    self.readout = LinearWeights(units + size, units, 1.0 / np.sqrt(units + size))  # o2o
    self.key_memory = self.param('key_memory', nn.initializers.normal(0.5), (slots, size))
    self.initial_read = self.param('initial_read', nn.initializers.xavier_uniform(),
                                   (1, size))
    if self.memory_induction:
      self.channel_gru = GRUWeights(2 * size, size)  # Reads [x_t ; M_i].
      self.channel_attention = TargetAttention(self.att_fcn_layer_sizes, self.dropout,
                                               self.init_std)
    self.output = FCN(self.layer_sizes, self.dropout)

  def _check_config(self, length: int) -> None:
    self.check_common(self.NAME, length)
    if self.memory_size < 1 or self.controller_units < 1:
      raise ConfigError(f'mimn memory_size and controller_units must be at least 1, not '
                        f'{self.memory_size} and {self.controller_units}')
    if not 1 <= self.induction_top_k <= self.memory_size:
      raise ConfigError(f'mimn induction_top_k must lie in [1, memory_size = '
                        f'{self.memory_size}], not {self.induction_top_k}')
    if self.utilisation_weight < 0:
      raise ConfigError(f'mimn utilisation_weight must be >= 0, not {self.utilisation_weight}')

  def initial_memory(self, dtype: jnp.dtype) -> jax.Array:
    """`M_0` `[m, E]`: the code's non-trainable `tanh(N(0, 1e-5))`, a constant (seed 0), in
    the parameters' `dtype` (the state's through the recurrence)."""
    draw = np.random.default_rng(0).normal(0.0, INITIAL_MEMORY_STD,
                                           (self.memory_size, self.hidden))
    return jnp.asarray(np.tanh(draw), dtype)

  def weights(self) -> dict[str, Any]:
    """The recurrence's parameters as arrays (created here, outside any scan)."""
    p = dict(controller=self.controller(), heads=self.heads(), readout=self.readout(),
             key_memory=jnp.tanh(self.key_memory))
    if self.memory_induction:
      p['channel_gru'] = self.channel_gru()
    return p

  def head_inputs(self, h: jax.Array, usage: jax.Array) -> list[jax.Array]:
    """The heads' layer inputs: `[h ; sg(g) / 400]` (`h` alone without the regulariser)."""
    if not self.utilisation_regularisation:
      return [h]
    return [h, jax.lax.stop_gradient(usage) / USAGE_SCALE]

  def step(self, p: dict[str, Any], state: dict[str, jax.Array], x: jax.Array,
           valid: jax.Array) -> dict[str, jax.Array]:
    """One behavior `x` `[B, E]` (`valid` `[B]`): the UIC's controller, addressing, read,
    MIU and write; a padding row keeps its state."""
    size = self.hidden
    head = size + HEAD_EXTRA
    h = gru_step(p['controller'], [x, state['read']], state['controller'])
    parameters = jnp.clip(linear(p['heads'], self.head_inputs(h, state['usage'])),
                          -CLIP, CLIP)
    read_head, write_head = parameters[:, :head], parameters[:, head:2 * head]
    erase = jax.nn.sigmoid(parameters[:, 2 * head:2 * head + size])
    add = jnp.tanh(parameters[:, 2 * head + size:])
    memory = state['memory']
    read_w = content_weights(read_head, p['key_memory'], memory)
    write_w = content_weights(write_head, p['key_memory'], memory)
    used = write_w
    if self.utilisation_regularisation:
      write_w = shift_and_sharpen(write_w, write_head)
      used = shift_and_sharpen(jax.lax.stop_gradient(write_w), write_head)
    new = dict(controller=h, read=read(memory, read_w),
               memory=write(memory, write_w, erase, add),
               usage=state['usage'] + used, added=state['added'] + add)
    if self.memory_induction:
      chosen = top_slots(read_w, self.induction_top_k)[..., None]  # [B, m, 1]
      x_slots = jnp.broadcast_to(x[:, None], memory.shape)
      channels = gru_step(p['channel_gru'], [x_slots, jax.lax.stop_gradient(memory)],
                          state['channels'])
      new['channels'] = jnp.where(chosen, channels, state['channels'])
    return jax.tree_util.tree_map(
        lambda n, o: jnp.where(valid.reshape(-1, *([1] * (n.ndim - 1))), n, o), new, state)

  def initial_state(self, batch: int) -> dict[str, jax.Array]:
    size, slots = self.hidden, self.memory_size
    state = dict(
        controller=jnp.zeros((batch, self.controller_units)),
        read=jnp.broadcast_to(jnp.tanh(self.initial_read), (batch, size)),
        memory=jnp.broadcast_to(self.initial_memory(self.initial_read.dtype),
                                (batch, slots, size)),
        usage=jnp.zeros((batch, slots)), added=jnp.zeros((batch, size)))
    if self.memory_induction:
      state['channels'] = jnp.zeros((batch, slots, size))
    return state

  def context(self, inputs: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    """The UIC and MIU over `inputs` `[B, L, F]` (L <= max_len): the final
    state, which does not depend on the candidate, with `items`, `summed` (`Σ_j x_j`)."""
    del train
    inputs = jnp.asarray(inputs)
    self._check_config(inputs.shape[1])
    items = inputs[..., 0]
    valid = items > 0
    x = self.item_embed[items] * valid[..., None]
    p = self.weights()

    def scan_step(state, step_inputs):
      x_t, valid_t = step_inputs
      return self.step(p, state, x_t, valid_t), None

    state, _ = jax.lax.scan(scan_step, self.initial_state(items.shape[0]),
                            (x.transpose(1, 0, 2), valid.T))
    return dict(state, items=items, summed=x.sum(axis=1))

  def usage_penalty(self, context: dict[str, jax.Array]) -> jax.Array:
    """`[B]`: each row's variance of the final usage `g_L` over the slots."""
    usage = context['usage']
    return jnp.mean(jnp.square(usage - usage.mean(-1, keepdims=True)), axis=-1)

  def score(self, context: dict[str, jax.Array], candidates: jax.Array, *,
            train: bool) -> tuple[jax.Array, jax.Array]:
    """The cell once more with each candidate `[B or 1, C, E]` as input, the channel
    attention and the prediction MLP -> logits `[B, C]`, read vectors r' `[B, C, E]`."""
    p = self.weights()
    head = self.hidden + HEAD_EXTRA
    state = {k: v[:, None] for k, v in context.items() if k != 'items'}  # [B, 1, ...]
    h = gru_step(p['controller'], [candidates, state['read']], state['controller'])
    kernel, bias = p['heads']
    read_head = jnp.clip(linear((kernel[:, :head], bias[:head]),
                                self.head_inputs(h, state['usage'])), -CLIP, CLIP)
    w = content_weights(read_head, p['key_memory'], state['memory'])  # [B, C, m]
    vector = read(state['memory'], w)  # r', [B, C, E]
    output = jnp.clip(linear(p['readout'], [h, vector]), -CLIP, CLIP)  # [B, C, H]
    mean_memory = state['added'] / self.memory_size
    inputs = [candidates, state['summed'], output]
    if self.memory_induction:
      weights = self.channel_attention(
          state['channels'], candidates[:, :, None], jnp.ones((1, 1, self.memory_size), bool),
          train=train)  # [B, C, m]
      inputs.append(jnp.einsum('bcm,bme->bce', weights, context['channels']))
    inputs.append(mean_memory * candidates)
    logits = self.output(inputs, train=train)
    return jnp.broadcast_to(logits, vector.shape[:2]), vector

  def context_penalty(self, context: dict[str, jax.Array], targets: jax.Array) -> jax.Array:
    """`utilisation_weight` times the mean over the real targets' rows of the usage variance
    (with `utilisation_regularisation`; added to `CandidateScorer.training_loss`)."""
    if not (self.utilisation_regularisation and self.utilisation_weight):
      return jnp.zeros(())
    rows = targets > 0
    penalty = jnp.where(rows, self.usage_penalty(context), 0.0).sum()
    return self.utilisation_weight * penalty / jnp.maximum(rows.sum(), 1)
