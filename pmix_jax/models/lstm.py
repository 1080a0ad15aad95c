"""A bidirectional LSTM over left-padded sequences whose cost follows their real lengths.

A scan over the window runs every step for every row. MGNM runs its BiLSTM on every level of
every training prefix, and on Toys (window 100) half the prefixes hold 3 behaviors or fewer:
there a scan (flax's `nn.RNN`) spent most of its steps on padding and about 65% of MGNM's
training step.

Here the rows are sorted by length and cut into groups of equal size (how many is chosen
per batch). One `lax.while_loop` per direction runs the groups one after another, each for
as many steps as its longest row, reading and writing the left-padded `[N, L, ·]` arrays in
place (a row past its last behavior reads zeros and writes nothing). JAX cannot
reverse-differentiate a loop whose trip count depends on data, so the recurrence has a
hand-written VJP (`_lstm`) that runs the same steps backwards, recomputing the gates from the
stored states; the tests check it against JAX's gradient of a `lax.scan`.

Limits: no forward-mode differentiation (`jvp`) through the custom VJP; under `vmap` the
per-batch choice runs both groupings and every loop runs to the longest row of all; each
row's behaviors must be contiguous at the end of its window, as left padding makes them.

The cell is flax's `LSTMCell`: gates i, f, g, o, sigmoid and tanh. `LSTMWeights` creates its
parameters with the names, shapes, initialisers and random draws of `nn.OptimizedLSTMCell`.
"""

from __future__ import annotations

import functools
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from pmix_jax.mesh import DATA_AXIS

Weights = tuple[jax.Array, jax.Array, jax.Array]  # Input [E, 4H], recurrent [H, 4H], bias [4H].


class _Kernel(nn.Module):
  shape: tuple[int, int]
  initializer: Callable
  use_bias: bool

  @nn.compact
  def __call__(self) -> tuple[jax.Array, jax.Array | None]:
    kernel = self.param('kernel', self.initializer, self.shape)
    if not self.use_bias:
      return kernel, None
    return kernel, self.param('bias', nn.initializers.zeros, self.shape[-1:])


class LSTMWeights(nn.Module):
  """One direction's weights, as `nn.OptimizedLSTMCell` names them (`ii`, `hi`, `if`, ...),
  concatenated in gate order i, f, g, o."""
  features: int  # H

  @nn.compact
  def __call__(self, in_features: int) -> Weights:
    inputs, recurrent, biases = [], [], []
    for gate in 'ifgo':
      inputs.append(_Kernel((in_features, self.features), nn.initializers.lecun_normal(),
                            False, name=f'i{gate}')()[0])
      kernel, bias = _Kernel((self.features, self.features), nn.initializers.orthogonal(),
                             True, name=f'h{gate}')()
      recurrent.append(kernel)
      biases.append(bias)
    return (jnp.concatenate(inputs, -1), jnp.concatenate(recurrent, -1),
            jnp.concatenate(biases, -1))


def _positions(t: jax.Array, lengths: jax.Array, length: int, reverse: bool) -> jax.Array:
  """The window positions of step `t` for rows of `lengths` `[S]` (left-padded): the oldest
  behavior first, or the latest first (`reverse`). Past a row's last behavior the position
  is `length`, out of bounds: a read there gives zeros, a write is dropped."""
  position = length - 1 - t if reverse else length - lengths + t
  return jnp.where(t < lengths, position, length)


def _schedule(lengths: jax.Array, v: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Step `v` of the loop over all groups -> (group j, its step t). Group j runs for its
  longest row, `lengths[j, 0]` steps, after the groups before it."""
  ends = jnp.cumsum(lengths[:, 0])
  # The minimum only matters past the last step, which `vmap` may run for finished lanes.
  group = jnp.minimum(jnp.searchsorted(ends, v, side='right'), lengths.shape[0] - 1)
  return group, v - (ends[group] - lengths[group, 0])


def _gates(x_t: jax.Array, h: jax.Array, weights: Weights) -> tuple[jax.Array, ...]:
  """`x_t` `[S, E]`, `h` `[S, H]` -> the activated gates i, f, g, o, each `[S, H]`."""
  w_in, w_rec, bias = weights
  i, f, g, o = jnp.split(x_t @ w_in + h @ w_rec + bias, 4, axis=-1)
  return jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _lstm(x: jax.Array, weights: Weights, groups: jax.Array, lengths: jax.Array,
          reverse: bool) -> jax.Array:
  """`x` `[N, L, E]` left-padded -> hidden states `[N, L, H]` (zero at padding).

  The rows run in groups, `groups` `[C, S]` (row indices; N marks an empty slot) of
  `lengths` `[C, S]`, each group's longest row first (it sets the group's steps); one
  `lax.while_loop` runs the groups one after the other. The VJP keeps h and c by loop step,
  `[C * L, S, H]`."""
  return _lstm_fwd(x, weights, groups, lengths, reverse)[0]


def _lstm_fwd(x, weights, groups, lengths, reverse):
  length = x.shape[1]
  size, hidden = groups.shape[1], weights[1].shape[0]

  def step(state):
    v, c, h, out, hs, cs = state
    group, t = _schedule(lengths, v)
    rows, positions = groups[group], _positions(t, lengths[group], length, reverse)
    c, h = jnp.where(t > 0, c, 0.0), jnp.where(t > 0, h, 0.0)  # A group starts from zero.
    i, f, g, o = _gates(x.at[rows, positions].get(mode='fill', fill_value=0), h, weights)
    c = f * c + i * g
    h = o * jnp.tanh(c)
    return (v + 1, c, h, out.at[rows, positions].set(h, mode='drop'), hs.at[v].set(h),
            cs.at[v].set(c))

  zeros = jnp.zeros((size, hidden), x.dtype)
  by_step = jnp.zeros((lengths.shape[0] * length, size, hidden), x.dtype)
  init = (0, zeros, zeros, jnp.zeros(x.shape[:2] + (hidden,), x.dtype), by_step, by_step)
  total = lengths[:, 0].sum()
  _, _, _, out, hs, cs = jax.lax.while_loop(lambda s: s[0] < total, step, init)
  return out, (x, weights, groups, lengths, hs, cs)


def _lstm_bwd(reverse, residuals, d_out):
  x, weights, groups, lengths, hs, cs = residuals
  w_in, w_rec, bias = weights
  length = x.shape[1]
  zeros = jnp.zeros(hs.shape[1:], hs.dtype)

  def step(state):
    v, dh, dc, dx, dw_in, dw_rec, d_bias = state
    group, t = _schedule(lengths, v)
    rows, positions = groups[group], _positions(t, lengths[group], length, reverse)
    last = t == lengths[group, 0] - 1  # A group's last step: nothing flows in from later.
    dh, dc = jnp.where(last, 0.0, dh), jnp.where(last, 0.0, dc)
    before = t > 0  # The state before step 0 is zero.
    c_prev = jnp.where(before, cs[jnp.maximum(v - 1, 0)], 0.0)
    h_prev = jnp.where(before, hs[jnp.maximum(v - 1, 0)], 0.0)
    x_t = x.at[rows, positions].get(mode='fill', fill_value=0)
    i, f, g, o = _gates(x_t, h_prev, weights)
    tanh_c = jnp.tanh(cs[v])
    dh = dh + d_out.at[rows, positions].get(mode='fill', fill_value=0)
    dc = dc + dh * o * (1.0 - tanh_c**2)
    dz = jnp.concatenate([dc * g * i * (1.0 - i), dc * c_prev * f * (1.0 - f),
                          dc * i * (1.0 - g**2), dh * tanh_c * o * (1.0 - o)], -1)
    return (v - 1, dz @ w_rec.T, dc * f, dx.at[rows, positions].set(dz @ w_in.T, mode='drop'),
            dw_in + x_t.T @ dz, dw_rec + h_prev.T @ dz, d_bias + dz.sum(0))

  init = (lengths[:, 0].sum() - 1, zeros, zeros, jnp.zeros_like(x), jnp.zeros_like(w_in),
          jnp.zeros_like(w_rec), jnp.zeros_like(bias))
  _, _, _, dx, *d_weights = jax.lax.while_loop(lambda s: s[0] >= 0, step, init)
  return dx, tuple(d_weights), None, None


_lstm.defvjp(_lstm_fwd, _lstm_bwd)


# What one more loop iteration costs, in row-steps (one row through one step): measured on a
# 2-core CPU (MGNM's BiLSTM at 64 inputs and 16 states, forward and backward) by timing
# full-length batches cut into 1 and 8 groups; `python -m experiments.lstm_grouping`
# re-derives it on other hardware (here it gave 81 and 85 in two quiet runs; 100 came from
# an earlier one-off timing). It only steers the choice of grouping, never the values.
ITERATION_COST = 100


def bidirectional_lstm(x: jax.Array, valid: jax.Array, forward: Weights, backward: Weights,
                       groupings: tuple[int, ...] = (1, 8)) -> tuple[jax.Array, jax.Array]:
  """`x` `[N, L, E]` left-padded, `valid` `[N, L]` (each row's behaviors contiguous at the
  end) -> the two directions' states concatenated, `[N, L, 2H]` (zero at padding), and
  their final states `[N, 2H]`: forward after the latest behavior, backward after the
  oldest (zero for an empty row).

  Under a context mesh with a data axis (the training and evaluation steps set it), every
  device sorts and runs its own rows (`jax.shard_map`): sorting the global batch would make
  every step of the loops gather rows from all devices."""
  mesh = jax.sharding.get_abstract_mesh()
  local = functools.partial(_bidirectional_lstm, groupings=groupings)
  if mesh.empty or mesh.shape.get(DATA_AXIS, 1) == 1:
    return local(x, valid, forward, backward)
  rows, replicated = P(DATA_AXIS), P()
  # check_vma=False: the loops' carries start as constants and become per-device values.
  return jax.shard_map(local, mesh=mesh, in_specs=(rows, rows, replicated, replicated),
                       out_specs=(rows, rows), check_vma=False)(x, valid, forward, backward)


def _bidirectional_lstm(x: jax.Array, valid: jax.Array, forward: Weights, backward: Weights,
                        groupings: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
  """`bidirectional_lstm` on one device's rows.

  The rows are sorted by length and cut into G groups of equal size, G one of `groupings`:
  per batch, the one of least estimated cost (iterations, and rows times steps). Many
  groups skip the padding of short rows; one group makes the fewest, largest steps, best
  when every row is long. The values do not depend on the choice."""
  dtype = jnp.result_type(x, *forward, *backward)  # The loops' carries need one dtype.
  x, valid = jnp.asarray(x, dtype), jnp.asarray(valid)
  forward, backward = (tuple(jnp.asarray(w, dtype) for w in weights)
                       for weights in (forward, backward))
  n, length, _ = x.shape
  if n == 0:
    return jnp.zeros((0, length, 2 * forward[1].shape[0]), dtype), jnp.zeros(
        (0, 2 * forward[1].shape[0]), dtype)
  lengths = valid.sum(axis=1)
  order = jnp.argsort(-lengths, stable=True)  # Longest first; row n is an empty slot.
  padded_lengths = jnp.concatenate([lengths, jnp.zeros((1,), lengths.dtype)])

  def slots(groups: int) -> tuple[jax.Array, jax.Array]:
    size = -(-n // groups)
    rows = jnp.concatenate([order, jnp.full((groups * size - n,), n)]).reshape(groups, size)
    return rows, padded_lengths[rows]

  def cost(groups: int) -> jax.Array:
    rows, row_lengths = slots(groups)
    return row_lengths[:, 0].sum() * (ITERATION_COST + rows.shape[1])

  def run(groups: int) -> jax.Array:
    rows, row_lengths = slots(groups)
    return jnp.concatenate([_lstm(x, forward, rows, row_lengths, False),
                            _lstm(x, backward, rows, row_lengths, True)], axis=-1)

  groupings = sorted({max(1, min(groups, n)) for groups in groupings})
  choice = jnp.argmin(jnp.stack([cost(groups) for groups in groupings]))
  states = jax.lax.switch(choice, [functools.partial(run, groups) for groups in groupings])
  rows = jnp.arange(n)
  hidden = states.shape[-1] // 2
  # The states at the latest and at the oldest behavior (zero for an empty row: padding).
  final = jnp.concatenate([states[rows, length - 1, :hidden],
                           states[rows, length - jnp.maximum(lengths, 1), hidden:]], axis=-1)
  return states, final
