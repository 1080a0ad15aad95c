"""Tests of MIND: B2I dynamic routing with a shared bilinear map and random initial logits,
the ReLU layers and the user profile, label-aware attention with power p, scoring by the
max over interests, the training loss, padding, config checks and training."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import configs.mind
from pmix_jax import models, train
from pmix_jax.errors import ConfigError
from pmix_jax.models import mind
from pmix_jax.models.mind import MIND, label_aware_attention
from tests.conftest import tiny_config
from tests.models.common import (QUIET, assert_beats_popularity,
                                 assert_padding_embeddings_reach_no_score,
                                 assert_short_input_is_left_padded, float64, inputs_with_users,
                                 jitted_interests, model_builder, numpy_normal_init, score_items)

VOCAB = (31, 6)  # 30 items; the derived user field: 5 users.
MAX_LEN = 10
PADS = (0, 3, 7)
HIDDEN = 8  # D
INTERESTS = 3  # K

make_model = model_builder(configs.mind, VOCAB, MAX_LEN, hidden=HIDDEN, num_interests=INTERESTS)


def make_inputs(seed=0, length=MAX_LEN, pads=PADS):
  return inputs_with_users(VOCAB, length=length, pads=pads, seed=seed)


@functools.cache
def variables(**overrides):
  return numpy_normal_init(make_model(**overrides), make_inputs())


def interests(model, v, inputs, train_mode=False, key=0):
  """`(interests [B, K, D], capsules [B, K, D], table [V, D])` in float64."""
  (q, table), state = jitted_interests(model, train_mode)(v, inputs, jax.random.key(key))
  capsules = state['intermediates']['capsules'][0]
  return (np.asarray(q, np.float64), np.asarray(capsules, np.float64),
          np.asarray(table, np.float64))


# Numpy references, in float64.

def np_softmax(x, axis):
  e = np.exp(x - x.max(axis=axis, keepdims=True))
  return e / e.sum(axis=axis, keepdims=True)


def np_squash(v):
  norm = np.linalg.norm(v, axis=-1, keepdims=True)
  return norm**2 / (1 + norm**2) * v / np.maximum(norm, 1e-30)


def np_routing(u, valid, logits, iterations):
  """Dynamic routing of one row, the papers' loop: `u` [K, L, D] the predictions of each
  interest from each behavior, `valid` [L], `logits` [K, L] -> capsules [K, D]."""
  k = u.shape[0]
  b = np.asarray(logits, np.float64).copy()
  for r in range(iterations):
    w = np_softmax(b, axis=0) * valid  # Each behavior over the interests.
    c = np.stack([np_squash(w[j] @ u[j]) for j in range(k)])
    if r < iterations - 1:
      b = b + np.stack([u[j] @ c[j] for j in range(k)])
  return c


def np_label_attention(s, p):
  """The label-aware attention's weights over the last axis of `s`."""
  if p == math.inf:
    return np.eye(s.shape[-1])[s.argmax(-1)]
  if p == 0:
    return np.full(s.shape, 1 / s.shape[-1])
  return np_softmax(np.sign(s) * np.abs(s)**p, axis=-1)


def np_softmax_loss(users, table, targets):
  """Full softmax cross-entropy of `users` [B, D] (item 0 no class), over targets > 0."""
  logits = users @ table.T
  logits[:, 0] = -np.inf
  log_p = logits - logits.max(-1, keepdims=True)
  log_p = log_p - np.log(np.exp(log_p).sum(-1, keepdims=True))
  real = targets > 0
  return -log_p[np.arange(len(targets)), targets][real].mean()


def fixed_draw():
  """The shared initial routing logits [K, max_len]: one draw from the constant key."""
  return np.asarray(jax.random.truncated_normal(jax.random.key(mind.ROUTING_KEY), -2.0, 2.0,
                                                (INTERESTS, MAX_LEN)), np.float64)


def test_registry_and_config():
  assert models.MODELS['mind'] is MIND and MIND.causal is False
  config = configs.mind.get_config()
  m = config.model
  assert (m.hidden, m.num_interests, m.routing_iterations, m.relu_layers, m.user_field) == (
      64, 4, 3, 1, -1)
  assert (m.routing_init, m.attention_power, m.dropout) == ('random', math.inf, 0.0)
  assert (config.train.targets, config.train.loss, config.train.num_negatives,
          config.train.batch_size, config.data.max_len) == (
              'prefix', 'sampled_softmax', 2560, 256, 50)
  user = configs.mind.get_config('user')
  assert tuple(user.data.features) == ('action', 'category', 'user')
  assert user.model.user_field == 3
  with pytest.raises(ValueError, match='unknown MIND variant'):
    configs.mind.get_config('profile')


def test_contract_shapes_and_parameters():
  """One shared bilinear map S [D, D] (no bias), a ReLU layer; hidden [B, 1, D] is the mean
  interest, score_items [B, V]."""
  model = make_model()
  inputs = make_inputs()
  v = variables()
  p = v['params']
  assert sorted(p) == ['bilinear', 'item_embed', 'relu_0']
  assert {k: w.shape for k, w in p['bilinear'].items()} == {'kernel': (HIDDEN, HIDDEN)}
  assert p['relu_0']['kernel'].shape == (HIDDEN, HIDDEN)
  hidden, table = jax.jit(lambda v_, x: model.apply(v_, x, train=False))(v, inputs)
  q, _, _ = interests(model, v, inputs)
  assert q.shape == (len(PADS), INTERESTS, HIDDEN) and hidden.shape == (len(PADS), 1, HIDDEN)
  np.testing.assert_allclose(hidden[:, 0], q.mean(axis=1), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(table, p['item_embed'])
  assert score_items(model, v, inputs).shape == (len(PADS), VOCAB[0])


@pytest.mark.parametrize('relu_layers', [1, 0])
def test_interests_match_numpy(relu_layers):
  """B2I routing in evaluation: predictions `S e_i` shared by the interests, the shared
  initial logits of the constant key, 3 iterations; then ReLU(W c + b) per interest. The
  K interests differ (the random logits break the symmetry of the shared S)."""
  model = make_model(relu_layers=relu_layers)
  v = variables(relu_layers=relu_layers)
  p = float64(v['params'])
  inputs = make_inputs()
  q, capsules, table = interests(model, v, inputs)
  valid = inputs[..., 0] > 0
  e = table[inputs[..., 0]] * valid[..., None]
  expected = np.stack([
      np_routing(np.repeat((e[b] @ p['bilinear']['kernel'])[None], INTERESTS, axis=0),
                 valid[b], fixed_draw(), 3) for b in range(len(PADS))])
  np.testing.assert_allclose(capsules, expected, rtol=1e-4, atol=1e-6)
  if relu_layers:
    expected = np.maximum(expected @ p['relu_0']['kernel'] + p['relu_0']['bias'], 0)
  np.testing.assert_allclose(q, expected, rtol=1e-4, atol=1e-6)
  assert not np.allclose(capsules[:, 0], capsules[:, 1], atol=1e-3)


def test_training_routing_draws():
  """With routing_init='random' the training logits are a fresh draw of the 'dropout'
  stream (the interests change with its key); 'fixed' uses the evaluation draw always."""
  inputs = make_inputs()
  model, v = make_model(), variables()
  first = interests(model, v, inputs, train_mode=True, key=1)[0]
  np.testing.assert_array_equal(first, interests(model, v, inputs, train_mode=True, key=1)[0])
  assert not np.allclose(first, interests(model, v, inputs, train_mode=True, key=2)[0],
                         atol=1e-4)
  evaluation = interests(model, v, inputs)[0]
  fixed = make_model(routing_init='fixed')
  np.testing.assert_allclose(interests(fixed, v, inputs, train_mode=True, key=1)[0],
                             evaluation, rtol=1e-6, atol=1e-7)


def test_label_aware_attention_matches_numpy():
  """softmax(sign(s)|s|^p) (the paper's pow where s >= 0, monotone everywhere), uniform for
  p = 0, the argmax for p = inf; finite gradients where a compatibility is 0."""
  rng = np.random.default_rng(0)
  s = rng.normal(size=(5, 4)).astype(np.float32) * 2
  s[0, 1] = 0.0  # A dead (all-zero) interest.
  for p in (0.0, 0.5, 1.0, 2.0, 3.0, math.inf):
    np.testing.assert_allclose(label_aware_attention(jnp.asarray(s), p),
                               np_label_attention(s.astype(np.float64), p), rtol=1e-5,
                               atol=1e-6)
  # p = 1 is the plain softmax; a larger p concentrates on the largest compatibility.
  np.testing.assert_allclose(label_aware_attention(jnp.asarray(s), 1.0),
                             jax.nn.softmax(s, axis=-1), rtol=1e-6)
  top = lambda p: np.asarray(label_aware_attention(jnp.asarray(s), p)).max(-1)
  assert (top(1.0) < top(2.0)).all() and (top(2.0) < top(8.0)).all()
  grad = jax.grad(lambda x: jnp.sum(label_aware_attention(x, 0.5) * jnp.arange(4.0)))(
      jnp.asarray(s))
  assert np.isfinite(grad).all()


def test_score_items_is_the_max_over_interests():
  model, v, inputs = make_model(), variables(), make_inputs()
  q, _, table = interests(model, v, inputs)
  per_interest = np.einsum('bkd,vd->bkv', q, table)
  np.testing.assert_allclose(score_items(model, v, inputs), per_interest.max(axis=1), rtol=1e-4,
                             atol=1e-5)
  # Different interests win for different items: not one interest's scores.
  assert len(np.unique(per_interest.argmax(axis=1))) > 1


@pytest.mark.parametrize('power', [math.inf, 2.0])
def test_training_loss_matches_numpy(power):
  """The label-aware user vector of each target (hard: its argmax interest), scored by the
  full softmax over items (item 0 is no class), averaged over the real targets (a filler
  row with target 0 counts for nothing); the training routing draw is the 'dropout'
  key's. Gradients are finite (checked for the soft attention, whose weights carry them
  too)."""
  model = make_model(attention_power=power)
  v = variables()
  inputs = np.concatenate([make_inputs(seed=3, pads=(0, 3, 7, 1, 0)),
                           np.zeros((1, MAX_LEN, 2), np.int32)])
  targets = np.array([4, 9, 9, 17, 2, 0], np.int32)
  rngs = {'dropout': jax.random.key(1), 'negatives': jax.random.key(2)}
  loss_fn = lambda v_: model.apply(v_, dict(inputs=inputs, targets=targets), loss='softmax',
                                   num_negatives=1, rngs=rngs, method='training_loss')
  if power == math.inf:
    loss = jax.jit(loss_fn)(v)
  else:
    loss, grads = jax.jit(jax.value_and_grad(loss_fn))(v)
    assert all(np.isfinite(g).all() for g in jax.tree_util.tree_leaves(grads))

  q, _, table = interests(model, v, inputs, train_mode=True, key=1)
  compatibility = np.einsum('bkd,bd->bk', q, table[targets])
  weights = np_label_attention(compatibility, power)
  expected = np_softmax_loss(np.einsum('bk,bkd->bd', weights, q), table, targets)
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  # The choice matters: the mean interest, or the first one, gives another loss.
  assert not np.isclose(loss, np_softmax_loss(q.mean(1), table, targets), rtol=1e-3)
  assert not np.isclose(loss, np_softmax_loss(q[:, 0], table, targets), rtol=1e-3)
  if power == math.inf:
    assert len(np.unique(compatibility[targets > 0].argmax(-1))) > 1


def test_sampled_softmax_draws_from_the_negatives_stream():
  model, v, inputs = make_model(), variables(), make_inputs()
  run = jax.jit(lambda key: model.apply(
      v, dict(inputs=inputs, targets=np.array([4, 9, 1], np.int32)), loss='sampled_softmax',
      num_negatives=5, method='training_loss',
      rngs={'dropout': jax.random.key(0), 'negatives': key}))
  assert np.isfinite(run(jax.random.key(0)))
  assert run(jax.random.key(0)) == run(jax.random.key(0))
  assert run(jax.random.key(0)) != run(jax.random.key(1))


def test_padding_changes_nothing():
  """A short window equals it left-padded to max_len (longer is an error), and the padding
  item's embedding never reaches a real item's score."""
  model = make_model()
  assert_short_input_is_left_padded(model, make_inputs, score_items, MAX_LEN)
  assert_padding_embeddings_reach_no_score(model, variables(), make_inputs())


def test_user_profile_is_concatenated_before_the_relu_layers():
  """With a user field, each capsule is concatenated with the user's embedding: the ReLU
  layer takes [c_j; u] (2D inputs), and the user changes the interests, not the capsules."""
  model = make_model(user_field=1)
  v = numpy_normal_init(model, make_inputs())
  p = v['params']
  assert p['user_embed'].shape == (VOCAB[1], HIDDEN)
  assert p['relu_0']['kernel'].shape == (2 * HIDDEN, HIDDEN)
  inputs = make_inputs()
  q, capsules, _ = interests(model, v, inputs)
  user = np.asarray(p['user_embed'], np.float64)[inputs[:, -1, 1]]
  x = np.concatenate([capsules, np.repeat(user[:, None], INTERESTS, axis=1)], axis=-1)
  expected = np.maximum(x @ np.asarray(p['relu_0']['kernel'], np.float64)
                        + np.asarray(p['relu_0']['bias'], np.float64), 0)
  np.testing.assert_allclose(q, expected, rtol=1e-4, atol=1e-6)
  other = inputs.copy()
  other[..., 1] = np.where(other[..., 0] > 0, 5, 0)  # Another user, the same behaviors.
  q2, capsules2, _ = interests(model, v, other)
  np.testing.assert_array_equal(capsules2, capsules)
  assert not np.allclose(q2[:2], q[:2], atol=1e-4)


@pytest.mark.parametrize('overrides, message', [
    (dict(routing_init='zeros'), 'routing_init must be one of'),
    (dict(num_interests=0), 'num_interests must be at least 1'),
    (dict(routing_iterations=0), 'routing_iterations must be at least 1'),
    (dict(relu_layers=-1), 'relu_layers must be >= 0'),
    (dict(attention_power=-1.0), 'attention_power must be >= 0'),
    (dict(attention_power=math.nan), 'attention_power must be >= 0'),
    (dict(dropout=1.0), 'dropout must lie in'),
    (dict(user_field=1, relu_layers=0), 'needs relu_layers >= 1'),
    (dict(user_field=2), "add 'user' to config.data.features"),
])
def test_bad_config_is_a_clear_error(overrides, message):
  model = make_model(**overrides)
  with pytest.raises(ConfigError, match=message):
    jax.eval_shape(lambda: model.init({'params': jax.random.key(0)}, make_inputs(),
                                      train=False))


def test_training_needs_prefix_targets():
  model, v, inputs = make_model(), variables(), make_inputs()
  with pytest.raises(ConfigError, match="targets='prefix'"):
    jax.eval_shape(lambda: model.apply(
        v, dict(inputs=inputs, targets=inputs[..., 0]), loss='softmax', num_negatives=1,
        method='training_loss',
        rngs={'dropout': jax.random.key(0), 'negatives': jax.random.key(1)}))


def test_prefix_training_beats_popularity(tmp_path):
  config = tiny_config('mind', train__num_epochs=2, train__lr=1e-2, **QUIET)
  assert_beats_popularity(train.train_and_evaluate(config, str(tmp_path)))
