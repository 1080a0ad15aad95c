"""Tests of the length-aware bidirectional LSTM: values and hand-written gradients against
an LSTM scanned with `lax.scan` over every position (updating only at real behaviors) and
differentiated by JAX, under every grouping; empty rows and batches; mixed dtypes; flax's
parameter names and initial values."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pmix_jax.models.lstm import LSTMWeights, bidirectional_lstm

HIDDEN, FEATURES, LENGTH = 3, 4, 7
LENGTHS = [7, 0, 3, 1, 7, 5, 2, 0, 4]  # A full row, empty rows, ties.


def reference(x, valid, forward, backward):
  """The textbook recurrence under `lax.scan` over every position, the state updated only
  at real behaviors (masking, where ours gathers): states `[N, L, 2H]`, finals `[N, 2H]`."""

  def direction(weights, reverse):
    w_in, w_rec, bias = weights

    def step(carry, inputs):
      x_t, valid_t = inputs
      c, h = carry
      i, f, g, o = jnp.split(x_t @ w_in + h @ w_rec + bias, 4, axis=-1)
      new_c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
      new_h = jax.nn.sigmoid(o) * jnp.tanh(new_c)
      keep = valid_t[:, None]
      c, h = jnp.where(keep, new_c, c), jnp.where(keep, new_h, h)
      return (c, h), h * keep

    zeros = jnp.zeros((x.shape[0], w_rec.shape[0]))
    _, states = jax.lax.scan(step, (zeros, zeros), (x.transpose(1, 0, 2), valid.T),
                             reverse=reverse)
    return states.transpose(1, 0, 2)

  ahead, behind = direction(forward, False), direction(backward, True)
  lengths = valid.sum(1)
  rows = jnp.arange(x.shape[0])
  finals = jnp.concatenate([ahead[:, -1], behind[rows, x.shape[1] - jnp.maximum(lengths, 1)]],
                           -1)
  return jnp.concatenate([ahead, behind], -1), finals


def make_case(seed=0, lengths=LENGTHS):
  rng = np.random.default_rng(seed)
  valid = np.arange(LENGTH)[None] >= LENGTH - np.array(lengths, int)[:, None]
  x = rng.normal(size=(len(lengths), LENGTH, FEATURES)).astype(np.float32)  # Padding too.
  weights = lambda: tuple(jnp.asarray(rng.normal(scale=0.7, size=shape).astype(np.float32))
                          for shape in [(FEATURES, 4 * HIDDEN), (HIDDEN, 4 * HIDDEN),
                                        (4 * HIDDEN,)])
  return jnp.asarray(x), jnp.asarray(valid), weights(), weights()


def loss(fn, x, valid, forward, backward):
  states, finals = fn(x, valid, forward, backward)
  probe = jnp.cos(jnp.arange(states.size, dtype=jnp.float32)).reshape(states.shape)
  return jnp.sum(jnp.sin(states) * probe) + jnp.sum(finals**2)


# 4 groups do not divide 9 rows; 20 > 9; (1, 8), the default, picks per batch: 1 group for
# LENGTHS; 8 for 512 rows of which 2 are long (the cost model's case for skipping padding).
MANY_SHORT = [LENGTH, LENGTH] + [1] * 510
CASES = [(LENGTHS, (1,)), (LENGTHS, (2,)), (LENGTHS, (4,)), (LENGTHS, (20,)), (LENGTHS, (1, 8)),
         (MANY_SHORT, (1, 8)), ([0, 0, 0], (1, 8)), ([3], (1, 8))]


@pytest.mark.parametrize('lengths,groupings', CASES)
def test_values_and_gradients_match_a_masked_scan(lengths, groupings):
  x, valid, forward, backward = make_case(lengths=lengths)
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


def test_empty_batch_and_mixed_dtypes():
  x, valid, forward, backward = make_case()
  states, finals = bidirectional_lstm(x[:0], valid[:0], forward, backward)
  assert states.shape == (0, LENGTH, 2 * HIDDEN) and finals.shape == (0, 2 * HIDDEN)
  low = bidirectional_lstm(x.astype(jnp.bfloat16), valid, forward, backward)[0]
  assert low.dtype == jnp.float32  # Promoted with the weights, as flax's cell does.
  np.testing.assert_allclose(low, bidirectional_lstm(x, valid, forward, backward)[0],
                             atol=0.05)
