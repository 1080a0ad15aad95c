"""Tests of the length-aware bidirectional LSTM: values and hand-written gradients against
an LSTM scanned with `lax.scan` over each unpadded row and differentiated by JAX; no
dependence on the grouping; empty rows; flax's parameter names and initial values."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pmix_jax.models.lstm import LSTMWeights, bidirectional_lstm

HIDDEN, FEATURES, LENGTH = 3, 4, 7
LENGTHS = [7, 0, 3, 1, 7, 5, 2, 0, 4]  # A full row, empty rows, ties.


def scanned_lstm(x, weights):
  """`x` `[T, E]` -> `[T, H]`, the textbook recurrence under `lax.scan`."""
  w_in, w_rec, bias = weights

  def step(carry, x_t):
    c, h = carry
    i, f, g, o = jnp.split(x_t @ w_in + h @ w_rec + bias, 4)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return (c, h), h

  zeros = jnp.zeros(w_rec.shape[0])
  return jax.lax.scan(step, (zeros, zeros), x)[1]


def reference(x, valid, forward, backward):
  """Row by row over the real behaviors only: states `[N, L, 2H]` and finals `[N, 2H]`."""
  states, finals = [], []
  for row, mask in zip(x, np.asarray(valid)):
    real = row[mask]
    out = jnp.zeros((LENGTH, 2 * HIDDEN))
    final = jnp.zeros(2 * HIDDEN)
    if len(real):
      ahead, behind = scanned_lstm(real, forward), scanned_lstm(real[::-1], backward)[::-1]
      out = out.at[LENGTH - len(real):].set(jnp.concatenate([ahead, behind], -1))
      final = jnp.concatenate([ahead[-1], behind[0]])
    states.append(out)
    finals.append(final)
  return jnp.stack(states), jnp.stack(finals)


def make_case(seed=0):
  rng = np.random.default_rng(seed)
  valid = np.arange(LENGTH)[None] >= LENGTH - np.array(LENGTHS)[:, None]
  x = rng.normal(size=(len(LENGTHS), LENGTH, FEATURES)).astype(np.float32)  # Padding too.
  weights = lambda: tuple(jnp.asarray(rng.normal(scale=0.7, size=shape).astype(np.float32))
                          for shape in [(FEATURES, 4 * HIDDEN), (HIDDEN, 4 * HIDDEN),
                                        (4 * HIDDEN,)])
  return jnp.asarray(x), jnp.asarray(valid), weights(), weights()


def loss(fn, x, valid, forward, backward):
  states, finals = fn(x, valid, forward, backward)
  probe = jnp.cos(jnp.arange(states.size, dtype=jnp.float32)).reshape(states.shape)
  return jnp.sum(jnp.sin(states) * probe) + jnp.sum(finals**2)


# 4 groups do not divide 9 rows; 20 > 9; (1, 8), the default, picks per batch.
@pytest.mark.parametrize('groupings', [(1,), (2,), (4,), (20,), (1, 8)])
def test_values_and_gradients_match_a_scan_per_row(groupings):
  x, valid, forward, backward = make_case()
  ours = jax.jit(lambda *a: bidirectional_lstm(*a, groupings=groupings))
  states, finals = ours(x, valid, forward, backward)
  want_states, want_finals = reference(x, valid, forward, backward)
  np.testing.assert_allclose(states, want_states, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(finals, want_finals, rtol=1e-5, atol=1e-6)

  grads = jax.jit(jax.grad(lambda *a: loss(ours, *a), argnums=(0, 2, 3)))(
      x, valid, forward, backward)
  want = jax.grad(lambda *a: loss(reference, *a), argnums=(0, 2, 3))(
      x, valid, forward, backward)
  for got, expected in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(want)):
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_padding_and_empty_rows_are_inert():
  """Zero states at padding, zero finals for an empty row, and no gradient reaches an
  input under the padding."""
  x, valid, forward, backward = make_case(1)
  states, finals = bidirectional_lstm(x, valid, forward, backward, groupings=(3,))
  assert not np.asarray(states)[~np.asarray(valid)].any()
  empty = np.array(LENGTHS) == 0
  assert not np.asarray(finals)[empty].any() and np.asarray(finals)[~empty].all()
  dx = jax.grad(lambda x: loss(bidirectional_lstm, x, valid, forward, backward))(x)
  assert not np.asarray(dx)[~np.asarray(valid)].any()
  assert np.abs(np.asarray(dx)[np.asarray(valid)]).sum(-1).all()


def test_weights_are_flax_lstm_cells():
  """The same parameter names, shapes and initial values as `nn.OptimizedLSTMCell`."""
  cell = nn.OptimizedLSTMCell(HIDDEN)
  x = jnp.ones((2, FEATURES))
  flax_params = cell.init(jax.random.key(3), cell.initialize_carry(jax.random.key(0),
                                                                    x.shape), x)
  ours = LSTMWeights(HIDDEN).init(jax.random.key(3), FEATURES)
  assert jax.tree_util.tree_structure(ours) == jax.tree_util.tree_structure(flax_params)
  jax.tree_util.tree_map(np.testing.assert_array_equal, ours, flax_params)
