"""Tests of MGNM: the user-aware graph and its GCN levels, the capsule routing, the BiLSTM
over left-padded sequences, target-aware scoring and pooling over levels, the loss, the
ablation switches, config checks and training."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import configs.mgnm
from pmix_jax import models, train
from pmix_jax.errors import ConfigError
from pmix_jax.models.mgnm import MGNM, SequenceBiLSTM, dynamic_routing, squash
from tests.conftest import tiny_config
from tests.models.common import (QUIET, assert_beats_popularity, assert_negatives_are_uniform,
                                 assert_padding_embeddings_reach_no_score,
                                 assert_short_input_is_left_padded, inputs_with_users,
                                 jitted_interests, model_builder, numpy_normal_init, score_items)

VOCAB = (31, 6)  # 30 items; the derived user field: 5 users.
MAX_LEN = 10
PADS = (0, 3, 7)
HIDDEN = 8  # D
CAPSULE = 6  # d'
INTERESTS = 2  # K
LEVELS = 3

make_model = model_builder(configs.mgnm, VOCAB, MAX_LEN, hidden=HIDDEN, capsule_dim=CAPSULE,
                           num_interests=INTERESTS, num_levels=LEVELS)


def make_inputs(seed=0, length=MAX_LEN, pads=PADS):
  return inputs_with_users(VOCAB, length=length, pads=pads, seed=seed)


@functools.cache
def variables():
  """N(0, 0.5) parameters of the default test model (every variant below takes a subset)."""
  return numpy_normal_init(make_model(), make_inputs())


def subset(params, like):
  """The entries of `params` that a variant's `like` (its init shapes) has."""
  if not isinstance(like, dict):
    return params
  return {key: subset(params[key], value) for key, value in like.items()}


def params_for(model):
  if model.bilinear != 'per_position':  # Its own bilinear shape: its own draw.
    return {'params': numpy_normal_init(model, make_inputs())['params']}
  return {'params': subset(variables()['params'], init_shapes(model)['params'])}


def init_shapes(model, inputs=None):
  inputs = make_inputs() if inputs is None else inputs
  return jax.eval_shape(lambda: model.init({'params': jax.random.key(0)}, inputs,
                                           train=False))


def interests(model, inputs=None, train_mode=False, key=0):
  inputs = make_inputs() if inputs is None else inputs
  (q, a, table), state = jitted_interests(model, train_mode)(
      params_for(model), inputs, jax.random.key(key))
  sown = {name: value[0] for name, value in state['intermediates'].items()
          if name != 'interests'}
  sown['capsules'] = state['intermediates']['interests']['capsules'][0]
  return np.asarray(q, np.float64), sown, np.asarray(table, np.float64)


# Numpy references, in float64.

def np_leaky(x):
  return np.where(x > 0, x, 0.2 * x)


def np_squash(v):
  norm = np.linalg.norm(v, axis=-1, keepdims=True)
  return norm**2 / (1 + norm**2) * v / np.maximum(norm, 1e-30)


def np_softmax(x, axis):
  e = np.exp(x - x.max(axis=axis, keepdims=True))
  return e / e.sum(axis=axis, keepdims=True)


def np_routing(z, valid, logits, iterations, second=None):
  """Eq. 6-9, one row and interest at a time: `z` [N, K, L, d'], `logits` [N, K, L];
  `second` (the code's BiLSTM placement) replaces z in the second iteration."""
  n, k, _, _ = z.shape
  g = logits.astype(np.float64).copy()
  out = np.zeros((n, k, z.shape[-1]))
  for row in range(n):
    for it in range(iterations):
      c = np_softmax(g[row], axis=0) * valid[row]  # Over the interests of each behavior.
      routed = second if it == 1 and second is not None else z
      if it == iterations - 1:
        routed = z
      o = np.stack([np_squash(c[i] @ routed[row, i]) for i in range(k)])
      if it < iterations - 1:
        g[row] += np.stack([routed[row, i] @ o[i] for i in range(k)])
    out[row] = o
  return out


def np_capsule_interests(params, h, valid, iterations=3, extractor='capsule'):
  """Eq. 5, routing (no BiLSTM, zero initial logits) or sum pooling, Eq. 11: `h`
  [B, levels, L, D] -> q [B, levels, K, D] and the capsules before Eq. 11 [B * levels, K,
  d']."""
  p = params['interests']
  batch, levels, length, _ = h.shape
  flat = h.reshape(batch * levels, length, -1)
  valid = np.repeat(valid, levels, axis=0).astype(np.float64)
  bilinear = np.asarray(p['bilinear'], np.float64)
  if bilinear.ndim == 4:  # Per position [L, K, d', D].
    z = np.einsum('nld,lkcd->nklc', flat, bilinear)
  else:  # Per interest [K, d', D], shared over the positions.
    z = np.einsum('nld,kcd->nklc', flat, bilinear)
  z = z * valid[:, None, :, None]
  if extractor == 'sum':
    o = z.sum(axis=2)
  else:
    o = np_routing(z, valid, np.zeros(z.shape[:3]), iterations)
  q = np.maximum(np.einsum('nkc,kcd->nkd', o, np.asarray(p['projection'], np.float64)), 0)
  return q.reshape(batch, levels, INTERESTS, -1), o


def np_level_scores(q, candidates):
  """Eq. 12-14: q [B, levels, K, D], candidates [B, C, D] -> [B, levels, C]."""
  logits = np.einsum('blkd,bcd->blkc', q, candidates)
  attention = np_softmax(logits, axis=2)  # Eq. 13, over the K interests.
  user = np.einsum('blkc,blkd->blcd', attention, q)  # Eq. 12, p_u per candidate.
  return np.einsum('blcd,bcd->blc', user, candidates)  # Eq. 14


def test_registry_and_config():
  assert models.MODELS['mgnm'] is MGNM and MGNM.causal is False
  config = configs.mgnm.get_config()
  m = config.model
  assert (m.hidden, m.capsule_dim, m.num_interests, m.num_levels, m.routing_iterations) == (
      16, 16, 4, 4, 3)
  assert (m.graph, m.pooling, m.interest_extractor, m.user_field) == (
      'user_aware', 'max', 'capsule', 1)
  assert m.use_graph and m.use_bilstm and m.projection and m.l1_weight == m.l2_weight == 1e-5
  assert tuple(config.data.features) == ('user',) and config.data.max_len == 100
  assert (config.train.targets, config.train.loss, config.train.num_negatives,
          config.train.batch_size, config.train.lr) == ('prefix', 'bce', 5, 256, 1e-3)


def test_contract_shapes_and_parameters():
  """hidden [B, 1, D] is the mean interest; score_items [B, V]; the graph's per-layer
  weights, the per-position bilinear maps, the shared BiLSTM and the projections W'_c."""
  model = make_model()
  inputs = make_inputs()
  v = variables()
  p = v['params']
  assert sorted(p) == ['gcn_0', 'gcn_1', 'interests', 'item_embed', 'user_embed']
  assert p['item_embed'].shape == (VOCAB[0], HIDDEN)
  assert p['user_embed'].shape == (VOCAB[1], HIDDEN)
  assert {k: w.shape for k, w in p['gcn_1'].items()} == {'kernel': (HIDDEN, HIDDEN)}
  caps = p['interests']
  assert sorted(caps) == ['bilinear', 'bilstm', 'projection']
  assert caps['bilinear'].shape == (MAX_LEN, INTERESTS, CAPSULE, HIDDEN)
  assert caps['projection'].shape == (INTERESTS, CAPSULE, HIDDEN)
  assert sorted(caps['bilstm']) == ['backward', 'forward', 'output']
  assert caps['bilstm']['forward']['ii']['kernel'].shape == (INTERESTS * CAPSULE, CAPSULE)
  assert caps['bilstm']['output']['kernel'].shape == (2 * CAPSULE, INTERESTS * CAPSULE)

  hidden, table = jax.jit(lambda v_, x: model.apply(v_, x, train=False))(v, inputs)
  q, _, _ = interests(model)
  assert q.shape == (len(PADS), LEVELS, INTERESTS, HIDDEN)
  np.testing.assert_allclose(hidden[:, 0], q.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(table, p['item_embed'])
  s = score_items(model, v, inputs)
  assert s.shape == (len(PADS), VOCAB[0]) and np.isfinite(s).all()


@pytest.mark.parametrize('graph', ['user_aware', 'dot'])
def test_adjacency_and_gcn_levels_match_numpy(graph):
  """Eq. 1 (with the user term or the code's dot product), zero at padding; Eq. 2-4:
  H^(0) the embeddings, H^(l+1) = leaky_relu((I + D^-1/2 A D^-1/2) H^(l) W^(l))."""
  model = make_model(graph=graph)
  inputs = make_inputs()
  p = params_for(model)['params']
  assert ('user_embed' in p) == (graph == 'user_aware')
  _, sown, table = interests(model, inputs)
  items, valid = inputs[..., 0], inputs[..., 0] > 0
  x = table[items] * valid[..., None]
  if graph == 'user_aware':
    user = np.asarray(p['user_embed'], np.float64)[inputs[:, -1, 1]]
    logits = np.einsum('bid,bjd,bd->bij', x, x, user)
  else:
    logits = np.einsum('bid,bjd->bij', x, x)
  mask = valid[:, :, None] & valid[:, None, :]
  a = 1 / (1 + np.exp(-logits)) * mask
  np.testing.assert_allclose(sown['adjacency'], a, rtol=1e-5, atol=1e-6)
  assert not np.asarray(sown['adjacency'])[~mask].any() and (a[mask] > 0).all()

  degree = a.sum(-1)
  inv = np.where(degree > 0, degree, 1.0) ** -0.5 * (degree > 0)
  propagation = np.eye(MAX_LEN) * valid[..., None] + inv[:, :, None] * a * inv[:, None, :]
  expected = [x]
  for level in range(LEVELS - 1):
    kernel = np.asarray(p[f'gcn_{level}']['kernel'], np.float64)
    expected.append(np_leaky(propagation @ expected[-1] @ kernel))
  np.testing.assert_allclose(sown['levels'], np.stack(expected, 1), rtol=1e-4, atol=1e-5)


def test_squash_and_dynamic_routing_match_numpy():
  """Eq. 7 and Eq. 6-9 (coupling over interests, zero at padding) from a given initial
  logits draw; gradients reach z through the last iteration only (the logits are
  computed from stop_gradient(z))."""
  rng = np.random.default_rng(0)
  v = rng.normal(size=(4, 5)).astype(np.float32)
  np.testing.assert_allclose(squash(v), np_squash(v.astype(np.float64)), rtol=1e-5)
  assert (np.linalg.norm(squash(v), axis=-1) < 1).all()
  n, k, length, dim = 3, 2, 5, 4
  z = rng.normal(size=(n, k, length, dim)).astype(np.float32)
  valid = np.ones((n, length), bool)
  valid[1, :2] = False
  logits = rng.normal(size=(n, k, length)).astype(np.float32)
  for iterations in (1, 3):
    np.testing.assert_allclose(dynamic_routing(z, valid, logits, iterations),
                               np_routing(z, valid, logits, iterations),
                               rtol=1e-4, atol=1e-6)
  second = rng.normal(size=z.shape).astype(np.float32)
  np.testing.assert_allclose(dynamic_routing(z, valid, logits, 3, second),
                             np_routing(z, valid, logits, 3, second), rtol=1e-4, atol=1e-6)
  assert not np.allclose(dynamic_routing(z, valid, logits, 3, second),
                         dynamic_routing(z, valid, logits, 3), atol=1e-3)
  # Padding never counts: changing z there changes nothing.
  changed = z.copy()
  changed[1, :, :2] = 100.0
  np.testing.assert_array_equal(dynamic_routing(changed, valid, logits, 3),
                                dynamic_routing(z, valid, logits, 3))
  # The gradient is that of squash(Σ_j c_j z_j) with the final coupling c held fixed.
  weights = rng.normal(size=(n, k, dim)).astype(np.float32)
  grad = jax.grad(lambda z_: jnp.sum(dynamic_routing(z_, valid, logits, 3) * weights))(z)
  g = logits.astype(np.float64)
  for _ in range(2):
    c = np_softmax(g, axis=1) * valid[:, None]
    o = np_squash(np.einsum('nkl,nkld->nkd', c, z))
    g = g + np.einsum('nkld,nkd->nkl', z, o)
  coupling = np_softmax(g, axis=1) * valid[:, None]
  fixed = jax.grad(lambda z_: jnp.sum(squash(jnp.einsum('nkl,nkld->nkd', coupling, z_))
                                      * weights))(z)
  np.testing.assert_allclose(grad, fixed, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('extractor, bilinear', [
    ('capsule', 'per_position'), ('sum', 'per_position'), ('capsule', 'per_interest')])
def test_interests_match_numpy(extractor, bilinear):
  """Eq. 5 (per-position bilinear maps, or one per interest), the routing from zero logits
  in evaluation (or sum pooling), Eq. 11 (ReLU projection per interest), one network shared
  by the levels."""
  model = make_model(use_bilstm=False, interest_extractor=extractor, bilinear=bilinear)
  inputs = make_inputs()
  q, sown, _ = interests(model, inputs)
  expected, capsules = np_capsule_interests(
      params_for(model)['params'], np.asarray(sown['levels']), inputs[..., 0] > 0,
      extractor=extractor)
  np.testing.assert_allclose(q, expected, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(sown['capsules'], capsules, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('pooling', ['max', 'sum'])
def test_score_items_is_target_aware_attention_pooled_over_levels(pooling):
  """Eq. 12-14 per level from the interests, then the max over levels (Eq. 15) or their
  sum (Figure 7)."""
  model = make_model(pooling=pooling)
  inputs = make_inputs()
  q, _, table = interests(model, inputs)
  per_level = np_level_scores(q, np.broadcast_to(table, (len(PADS),) + table.shape))
  expected = per_level.max(axis=1) if pooling == 'max' else per_level.sum(axis=1)
  np.testing.assert_allclose(score_items(model, variables(), inputs), expected, rtol=1e-4,
                             atol=1e-5)


def test_training_loss_matches_numpy():
  """Eq. 16-17: per-level BCE of the target against its negatives, summed over levels and
  averaged over real targets (a filler row with target 0 counts for nothing), plus
  l1_weight * Σ|A| (averaged over rows) and l2_weight * ½ Σ θ². The routing logits start
  from a draw of the 'dropout' stream; negatives avoid the target. Gradients are finite."""
  l1, l2, num_negatives = 0.01, 1e-3, 4
  model = make_model(l1_weight=l1, l2_weight=l2)
  inputs = np.concatenate([make_inputs(seed=3), np.zeros((1, MAX_LEN, 2), np.int32)])
  targets = np.array([4, 9, 9, 0], np.int32)
  batch = dict(inputs=inputs, targets=targets)
  rngs = {'dropout': jax.random.key(1), 'negatives': jax.random.key(2)}
  v = params_for(model)
  loss, grads = jax.jit(jax.value_and_grad(lambda v_: model.apply(
      v_, batch, loss='bce', num_negatives=num_negatives, rngs=rngs,
      method='training_loss')))(v)
  assert all(np.isfinite(g).all() for g in jax.tree_util.tree_leaves(grads))

  negatives = np.asarray(model.apply({}, jnp.asarray(targets), num_negatives,
                                     method='negatives', rngs=rngs))
  assert negatives.shape == (4, num_negatives)
  assert ((negatives >= 1) & (negatives < VOCAB[0]) & (negatives != targets[:, None])).all()
  # The same routing draw (the 'dropout' key), which changes the interests.
  q, sown, table = interests(model, inputs, train_mode=True, key=1)
  a = np.asarray(sown['adjacency'], np.float64)
  assert not np.allclose(q, interests(model, inputs, train_mode=True, key=5)[0], atol=1e-4)
  candidates = np.concatenate([targets[:, None], negatives], axis=1)
  s = np_level_scores(q, table[candidates])  # [B, levels, 1 + n]
  log_sigmoid = lambda t: -np.logaddexp(0, -t)
  bce = -(log_sigmoid(s[..., 0]) + log_sigmoid(-s[..., 1:]).sum(-1)).sum(axis=1)
  real = targets > 0
  squares = sum(np.sum(np.asarray(w, np.float64)**2) for w in jax.tree_util.tree_leaves(v))
  expected = bce[real].mean() + l1 * a.sum(axis=(1, 2))[real].mean() + l2 * 0.5 * squares
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  assert l1 * a.sum(axis=(1, 2))[real].mean() > 1e-4 * expected  # Both terms are visible.
  assert l2 * 0.5 * squares > 1e-4 * expected


def test_sampled_softmax_loss_matches_numpy():
  """The baselines' loss: per level, the target's softmax against negatives shared by the
  batch (an accidental hit of the target counts for nothing), summed over levels, with the
  same L1 and L2 terms."""
  l1, l2, num_negatives = 0.01, 1e-3, 40
  model = make_model(l1_weight=l1, l2_weight=l2)
  inputs = np.concatenate([make_inputs(seed=3), np.zeros((1, MAX_LEN, 2), np.int32)])
  targets = np.array([4, 9, 9, 0], np.int32)
  rngs = {'dropout': jax.random.key(1), 'negatives': jax.random.key(2)}
  v = params_for(model)
  loss = model.apply(v, dict(inputs=inputs, targets=targets), loss='sampled_softmax',
                     num_negatives=num_negatives, rngs=rngs, method='training_loss')

  shared = np.asarray(model.apply({}, num_negatives, method='shared_negatives', rngs=rngs))
  assert ((shared >= 1) & (shared < VOCAB[0])).all()
  assert np.isin(targets[:3], shared).any()  # The hit masking below is exercised.
  q, sown, table = interests(model, inputs, train_mode=True, key=1)
  a = np.asarray(sown['adjacency'], np.float64)
  positive = np_level_scores(q, table[targets][:, None])  # [B, levels, 1]
  negative = np_level_scores(
      q, np.broadcast_to(table[shared], (len(targets),) + table[shared].shape))
  logits = np.concatenate([positive, np.where(shared == targets[:, None, None], -np.inf,
                                              negative)], axis=-1)
  top = logits.max(-1, keepdims=True)
  log_softmax = positive[..., 0] - (top[..., 0] + np.log(np.exp(logits - top).sum(-1)))
  real = targets > 0
  squares = sum(np.sum(np.asarray(w, np.float64)**2) for w in jax.tree_util.tree_leaves(v))
  expected = (-log_softmax.sum(axis=1)[real].mean() + l1 * a.sum(axis=(1, 2))[real].mean()
              + l2 * 0.5 * squares)
  np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_negatives_are_uniform_over_other_items():
  assert_negatives_are_uniform(make_model(), {}, VOCAB[0])


def lstm_params(module, x, valid, seed=0):
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), x, valid))
  return jax.tree_util.tree_map(
      lambda leaf: rng.normal(scale=0.5, size=leaf.shape).astype(np.float32), shapes)


def numpy_lstm(x, kernel, recurrent, bias):
  """The textbook LSTM over the rows of `x` `[N, T, E]`: hidden states `[N, T, H]`."""
  sigmoid = lambda v: 1 / (1 + np.exp(-v))
  c = h = np.zeros((x.shape[0], recurrent.shape[0]))
  states = []
  for t in range(x.shape[1]):
    i, f, g, o = np.split(x[:, t] @ kernel + h @ recurrent + bias, 4, axis=-1)
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    h = sigmoid(o) * np.tanh(c)
    states.append(h)
  return np.stack(states, axis=1)


def test_bilstm_is_a_forward_and_a_backward_lstm():
  """Eq. 10's BiLSTM on unpadded rows against numpy: the readout of the forward LSTM's
  states beside the backward LSTM's (run over the reversed row, re-reversed), and the final
  states are the forward one after the latest behavior, the backward one after the oldest."""
  module = SequenceBiLSTM(features=3, out_features=5)
  x = np.random.default_rng(1).normal(size=(2, 6, 4)).astype(np.float32)
  valid = np.ones((2, 6), bool)
  v = lstm_params(module, x, valid)

  def direction(name):  # Flax's cell keeps one kernel per gate: i, f, g, o.
    cell = v['params'][name]
    return (np.concatenate([cell['i' + gate]['kernel'] for gate in 'ifgo'], axis=-1),
            np.concatenate([cell['h' + gate]['kernel'] for gate in 'ifgo'], axis=-1),
            np.concatenate([cell['h' + gate]['bias'] for gate in 'ifgo'], axis=-1))

  forward = numpy_lstm(x, *direction('forward'))
  backward = numpy_lstm(x[:, ::-1], *direction('backward'))[:, ::-1]
  kernel = np.asarray(v['params']['output']['kernel'])
  np.testing.assert_allclose(module.apply(v, x, valid),
                             np.concatenate([forward, backward], -1) @ kernel,
                             rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(module.apply(v, x, valid, final=True),
                             np.concatenate([forward[:, -1], backward[:, 0]], -1) @ kernel,
                             rtol=1e-4, atol=1e-5)


def test_bilstm_ignores_left_padding_and_reads_each_direction():
  """Eq. 10's BiLSTM: on a left-padded row it equals the unpadded row at the real
  positions (zero at padding), and so do its final states; with the readout limited to
  one direction, the forward half reads earlier behaviors only, the backward later ones."""
  module = SequenceBiLSTM(features=3, out_features=5)
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 6, 4)).astype(np.float32)
  valid = np.ones((2, 6), bool)
  valid[0, :2] = False
  x[0, :2] = rng.normal(size=(2, 4))  # Garbage under the padding: never read.
  v = lstm_params(module, x, valid)
  out = np.asarray(module.apply(v, x, valid))
  alone = np.asarray(module.apply(v, x[:1, 2:], valid[:1, 2:]))
  np.testing.assert_allclose(out[0, 2:], alone[0], rtol=1e-5, atol=1e-6)
  assert not out[0, :2].any()
  np.testing.assert_allclose(module.apply(v, x, valid, final=True)[0],
                             module.apply(v, x[:1, 2:], valid[:1, 2:], final=True)[0],
                             rtol=1e-5, atol=1e-6)
  kernel = np.asarray(v['params']['output']['kernel'])
  for half, position, earlier_unchanged in [(0, 4, True), (1, 3, False)]:
    only = kernel.copy()
    only[3 * (1 - half):3 * (2 - half)] = 0.0  # Rows [0, 3) read forward, [3, 6) backward.
    w = {'params': {**v['params'], 'output': {'kernel': only}}}
    changed = x.copy()
    changed[0, position] += 1.0
    base, new = module.apply(w, x, valid)[0], module.apply(w, changed, valid)[0]
    same = slice(2, position) if earlier_unchanged else slice(position + 1, 6)
    moved = slice(position, 6) if earlier_unchanged else slice(2, position + 1)
    np.testing.assert_allclose(new[same], base[same], atol=1e-6)
    assert not np.allclose(new[moved], base[moved], atol=1e-4)


def test_padding_changes_nothing():
  """A short window equals it left-padded to max_len (longer is an error), and the padding
  item's and padding user's embeddings never reach a real item's score."""
  model = make_model()
  assert_short_input_is_left_padded(model, make_inputs, score_items, MAX_LEN)
  assert_padding_embeddings_reach_no_score(model, variables(), make_inputs(), users=True)


VARIANTS = [
    # (overrides, top-level params, interest-extractor params, levels)
    (dict(), ['gcn_0', 'gcn_1', 'user_embed'], ['bilinear', 'bilstm', 'projection'], LEVELS),
    (dict(use_graph=False), [], ['bilinear', 'bilstm', 'projection'], 1),
    (dict(num_levels=1), [], ['bilinear', 'bilstm', 'projection'], 1),
    (dict(graph='dot'), ['gcn_0', 'gcn_1'], ['bilinear', 'bilstm', 'projection'], LEVELS),
    (dict(use_bilstm=False), ['gcn_0', 'gcn_1', 'user_embed'], ['bilinear', 'projection'],
     LEVELS),
    (dict(interest_extractor='bilstm'), ['gcn_0', 'gcn_1', 'user_embed'],
     ['bilinear', 'bilstm', 'projection'], LEVELS),
    (dict(interest_extractor='sum'), ['gcn_0', 'gcn_1', 'user_embed'],
     ['bilinear', 'projection'], LEVELS),
    (dict(interest_extractor='self_attention'), ['gcn_0', 'gcn_1', 'user_embed'],
     ['attention_heads', 'attention_hidden', 'bilinear', 'projection'], LEVELS),
    (dict(projection=False, capsule_dim=HIDDEN), ['gcn_0', 'gcn_1', 'user_embed'],
     ['bilinear', 'bilstm'], LEVELS),
]


@pytest.mark.parametrize('overrides, top, extractor, levels', VARIANTS,
                         ids=[str(v[0]) if v[0] else 'default' for v in VARIANTS])
def test_ablation_switches_change_the_parameters(overrides, top, extractor, levels):
  model = make_model(**overrides)
  (q, a, table), shapes = jax.eval_shape(lambda: model.init_with_output(
      {'params': jax.random.key(0)}, make_inputs(), train=False, method='interests'))
  params = shapes['params']
  assert sorted(params) == sorted(top + ['interests', 'item_embed'])
  assert sorted(params['interests']) == extractor
  assert q.shape == (len(PADS), levels, INTERESTS, HIDDEN)
  assert (a is None) == (levels == 1)
  if overrides.get('interest_extractor') == 'bilstm':  # Final states -> K interests.
    assert params['interests']['bilstm']['output']['kernel'].shape == (
        2 * CAPSULE, INTERESTS * CAPSULE)
  if 'capsule_dim' in overrides:
    assert params['interests']['bilinear'].shape == (MAX_LEN, INTERESTS, HIDDEN, HIDDEN)


def test_ablations_change_the_output_as_expected():
  """Without the graph the single level is the full model's level 0 (the capsule network
  is shared by the levels); dropping the BiLSTM changes the interests."""
  inputs = make_inputs()
  full, _, _ = interests(make_model(), inputs)
  raw, _, _ = interests(make_model(use_graph=False), inputs)
  np.testing.assert_allclose(raw[:, 0], full[:, 0], rtol=1e-5, atol=1e-6)
  assert not np.allclose(full[:, 1], full[:, 0], atol=1e-4)
  plain, _, _ = interests(make_model(use_bilstm=False), inputs)
  assert not np.allclose(plain, full, atol=1e-4)


def test_bilstm_in_routing_learns_through_the_couplings_only():
  """The code's placement: the same parameters as Eq. 10's; the interests pool the plain Z
  (so they differ from Eq. 10's), and the BiLSTM still gets gradients, through the last
  coupling."""
  inputs = make_inputs()
  model = make_model(bilstm_placement='routing')
  v = variables()
  eq10, _, _ = interests(make_model(), inputs)
  routed, _, _ = interests(model, inputs)
  assert not np.allclose(routed, eq10, atol=1e-4)
  grads = jax.jit(jax.grad(lambda p: jnp.sum(model.apply(
      {'params': p}, inputs, train=False, method='interests')[0] ** 2)))(v['params'])
  assert np.abs(grads['interests']['bilstm']['output']['kernel']).max() > 0
  assert np.abs(grads['interests']['bilinear']).max() > 0


@pytest.mark.parametrize('overrides, message', [
    (dict(graph='gat'), 'graph must be one of'),
    (dict(interest_extractor='transformer'), 'interest_extractor must be one of'),
    (dict(pooling='mean'), 'pooling must be one of'),
    (dict(routing_init='normal'), 'routing_init must be one of'),
    (dict(bilstm_placement='output'), 'bilstm_placement must be one of'),
    (dict(bilinear='shared'), 'bilinear must be one of'),
    (dict(bilinear_std=0.0), 'bilinear_std must be > 0'),
    (dict(num_levels=0), 'num_levels must be at least 1'),
    (dict(num_interests=0), 'num_interests must be at least 1'),
    (dict(capsule_dim=0), 'capsule_dim must be at least 1'),
    (dict(routing_iterations=0), 'routing_iterations must be at least 1'),
    (dict(l1_weight=-1.0), 'l1_weight and l2_weight'),
    (dict(dropout=1.0), 'dropout must lie in'),
    (dict(projection=False), 'capsule_dim .* must equal hidden'),
])
def test_bad_config_is_a_clear_error(overrides, message):
  with pytest.raises(ConfigError, match=message):
    init_shapes(make_model(**overrides))


def test_training_needs_its_losses_prefix_targets_and_a_user_field():
  model = make_model()
  inputs = make_inputs()
  v = variables()
  run = lambda batch, loss='bce': jax.eval_shape(lambda: model.apply(
      v, batch, loss=loss, num_negatives=2, method='training_loss',
      rngs={'dropout': jax.random.key(0), 'negatives': jax.random.key(1)}))
  assert run(dict(inputs=inputs, targets=np.ones(3, np.int32))).shape == ()
  assert run(dict(inputs=inputs, targets=np.ones(3, np.int32)),
             loss='sampled_softmax').shape == ()
  with pytest.raises(ConfigError, match="config.train.loss='bce'"):
    run(dict(inputs=inputs, targets=np.ones(3, np.int32)), loss='softmax')
  with pytest.raises(ConfigError, match="targets='prefix'"):
    run(dict(inputs=inputs, targets=inputs[..., 0]))
  with pytest.raises(ConfigError, match="add 'user' to config.data.features"):
    init_shapes(make_model(vocab=VOCAB[:1]), inputs[..., :1])
  init_shapes(make_model(vocab=VOCAB[:1], graph='dot'), inputs[..., :1])  # No user needed.


def test_prefix_training_beats_popularity(tmp_path):
  config = tiny_config('mgnm', train__num_epochs=5, train__lr=1e-2, **QUIET)
  assert_beats_popularity(train.train_and_evaluate(config, str(tmp_path)))


@pytest.mark.parametrize('bilinear', ['per_position', 'per_interest'])
def test_bilinear_maps_start_from_n0_bilinear_std(bilinear):
  model = make_model(bilinear=bilinear, bilinear_std=0.25)
  params = jax.jit(lambda: model.init({'params': jax.random.key(0)}, make_inputs(),
                                      train=False))()['params']
  weights = np.asarray(params['interests']['bilinear'])
  assert weights.ndim == (4 if bilinear == 'per_position' else 3)
  assert abs(weights.std() - 0.25) < 0.02 and abs(weights.mean()) < 0.02
