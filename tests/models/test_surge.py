"""Tests of SURGE: the metric-learnt graph and its relative-rank sparsification, the cluster-
and query-aware graph convolution, the pooling and the AUGRU prediction against numpy,
padding, chunked scoring against the training scorer, config checks and training."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import configs.surge
from pmix_jax import models, train
from pmix_jax.errors import ConfigError
from pmix_jax.models import surge
from tests.conftest import tiny_config
from tests.models.common import (QUIET, assert_beats_popularity,
                                 assert_candidate_training_checks, assert_call_and_score_shapes,
                                 assert_loss_falls_from_chance, assert_scores_ignore_padding,
                                 float64, inputs_maker,
                                 jitted_method, model_builder, numpy_normal_init, score_items)
from tests.models.test_sli_rec import np_fcn, np_masked_softmax, np_sigmoid

VOCAB = (31,)  # 30 items.
MAX_LEN = 10
PADS = (0, 3, 9, MAX_LEN)  # 10, 7, 1 and 0 behaviors.
HIDDEN = 6  # E
POOL = 4  # pool_length: the first two rows are pooled.

# The test model: no L2 terms (`sli_rec`'s tests check them), score_items in chunks of 3 items
# (the last one padded), which the tests compare with unchunked `score_candidates`.
make_model = model_builder(configs.surge, VOCAB, MAX_LEN, hidden=HIDDEN, dropout=0.0,
                           layer_sizes=(7, 5), att_fcn_layer_sizes=(9, 4), pool_length=POOL,
                           metric_heads=2, embed_l2=0.0, layer_l2=0.0,
                           score_chunk=3 * len(PADS))
make_inputs = inputs_maker(VOCAB, MAX_LEN, PADS, dtype=np.int32)


@functools.cache
def variables(model):
  return numpy_normal_init(model, make_inputs())


@functools.cache
def sown_graph(model):
  """A jitted `(variables, inputs) ->` the similarity and adjacency that `context` sows."""
  return jax.jit(lambda v, x: model.apply(v, x, train=False, method='context',
                                          mutable=['intermediates'])[1]['intermediates'])


# Numpy references, in float64, one row at a time (the MLPs and the masked softmax are
# SLi-Rec's, as in the model).

def np_leaky(x):
  return np.where(x > 0, x, 0.2 * x)


def np_attention(p, keys, queries, valid):
  """The code's `_attention_fcn` on the full concatenation: keys [L, K], queries [L, Q]."""
  k = keys @ p['attention_mat']
  q = np.broadcast_to(queries, k.shape)
  return np_masked_softmax(np_fcn(p['fcn'], np.concatenate([k, q, k - q, k * q], -1)), valid)


def np_graph(p, x, valid, ratio):
  """Eq. 1-3: S (min-max over the real columns of each row, mean over heads) and A."""
  heads = []
  for w in p['metric_weights'][:, 0]:
    xw = x * w
    xw = xw / np.maximum(np.linalg.norm(xw, axis=-1, keepdims=True), 1e-6)
    cosine = xw @ xw.T
    scaled = np.zeros_like(cosine)
    for i in np.flatnonzero(valid):
      row = cosine[i, valid]
      if row.max() > row.min():
        scaled[i, valid] = (row - row.min()) / (row.max() - row.min())
    heads.append(scaled)
  s = np.mean(heads, axis=0) * valid[:, None] * valid[None, :]
  ranked = np.sort(s.ravel())[::-1]
  rank = int(np.ceil(np.count_nonzero(s) * ratio))
  return s, s > ranked[rank]


def np_augru(p, h, attention, kept):
  size = p['candidate_bias'].shape[0]
  state = np.zeros(size)
  for j in np.flatnonzero(kept):
    r, u = np.split(np_sigmoid(np.concatenate([h[j], state]) @ p['gates_kernel']
                               + p['gates_bias']), 2)
    c = np.tanh(np.concatenate([h[j], r * state]) @ p['candidate_kernel'] + p['candidate_bias'])
    u = (1 - attention[j]) * u
    state = u * state + (1 - u) * c
  return state


def np_score(p, x, valid, t, ratio=0.5, pool=POOL):
  """Eq. 1-12 for one row and one candidate embedding `t`; returns the logit and the pooled
  nodes, chosen by rank (argsort) rather than by the model's threshold."""
  _, a = np_graph(p, x, valid, ratio)
  loops = (a | np.eye(len(x), dtype=bool)).astype(float)
  root = np.sqrt(loops.sum(-1)) + 1e-7
  two_hops = np.linalg.matrix_power(loops / root[:, None] / root[None, :], 2)
  alpha = np_attention(p['cluster_attention'], x, two_hops @ x, valid)  # Eq. 4
  beta = np_attention(p['query_attention'], x, t, valid)  # Eq. 5
  edges = np.stack([np_masked_softmax(np_leaky(alpha + beta[i]), loops[i] > 0)
                    for i in range(len(x))])  # Eq. 6
  h = np_leaky(edges @ x @ p['fusion']['kernel'] + x)  # Eq. 7
  fitness = np_masked_softmax(np_attention(p['cluster_attention'], h, two_hops @ h, valid)
                              + np_attention(p['query_attention'], h, t, valid), valid)
  fitness = fitness * valid  # Eq. 8
  count = min(valid.sum(), pool)
  kept = np.zeros(len(x), bool)
  kept[np.argsort(-fitness, kind='stable')[:count]] = True  # Eq. 9
  readout = (fitness * kept) @ h  # Eq. 10
  state = np_augru(p['augru'], h, np_attention(p['gru_attention'], h, t, kept), kept)  # Eq. 11
  return np_fcn(p['output'], np.concatenate([state, readout, t, readout * t])), kept


def test_graph_matches_numpy():
  """Eq. 1-2 (weighted cosine per head, min-max over the real behaviors of each row, heads
  averaged, 0 for a constant row and at padding) and Eq. 3 (the edges above the value at rank
  ceil(ε n) of the n nonzero similarities, about ε of them)."""
  model = make_model(relative_threshold=0.3)
  inputs = make_inputs()
  p = float64(variables(model)['params'])
  sown = sown_graph(model)(variables(model), inputs)
  for b, row in enumerate(inputs):
    valid = row[:, 0] > 0
    x = p['item_embed'][row[:, 0]] * valid[:, None]
    s, a = np_graph(p, x, valid, 0.3)
    np.testing.assert_allclose(sown['similarity'][0][b], s, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(sown['adjacency'][0][b], a)
    if valid.sum() > 1:
      assert abs(a.sum() - 0.3 * np.count_nonzero(s)) <= 1
  assert not np.asarray(sown['similarity'][0][2]).any()  # A single behavior: no edge.


def test_top_nodes_keeps_the_highest_scores():
  """Eq. 9: the `count` highest scores of each row (every real node when count >= n)."""
  scores_ = np.array([[[0.1, 0.4, 0.0, 0.3, 0.2]], [[0.5, 0.0, 0.0, 0.3, 0.2]]], np.float32)
  for counts, expected in [((2, 1), [[0, 1, 0, 1, 0], [1, 0, 0, 0, 0]]),
                           ((5, 3), [[1, 1, 0, 1, 1], [1, 0, 0, 1, 1]]),
                           ((0, 4), [[0, 0, 0, 0, 0], [1, 0, 0, 1, 1]])]:
    kept = surge.top_nodes(jnp.asarray(scores_), jnp.asarray(counts))
    np.testing.assert_array_equal(kept[:, 0], np.array(expected, bool))


def test_scores_match_numpy():
  """Eq. 1-12 for every candidate: graph, cluster- and query-aware convolution, fitness and
  pooling of `pool_length` nodes, readout and AUGRU over the pooled nodes, prediction MLP;
  the attention MLPs on the full concatenation [k ; q ; k - q ; k ⊙ q]."""
  model = make_model()
  inputs = make_inputs()
  v = variables(model)
  p = float64(v['params'])
  candidates = np.array([[1, 5, 17, 30]] * len(PADS), np.int32)
  logits = np.asarray(jitted_method(model, 'score_candidates')(v, inputs, candidates),
                      np.float64)
  for b, row in enumerate(inputs):
    valid = row[:, 0] > 0
    x = p['item_embed'][row[:, 0]] * valid[:, None]
    for c, item in enumerate(candidates[b]):
      expected, kept = np_score(p, x, valid, p['item_embed'][item])
      assert kept.sum() == min(valid.sum(), POOL)
      np.testing.assert_allclose(logits[b, c], expected, rtol=1e-4, atol=1e-5)


def test_registry_shapes_and_call():
  model = make_model()
  assert type(model) is models.MODELS['surge'] and not model.causal
  v = variables(model)
  assert set(v['params']) == {'item_embed', 'metric_weights', 'cluster_attention',
                              'query_attention', 'gru_attention', 'fusion', 'augru', 'output'}
  assert v['params']['metric_weights'].shape == (2, 1, HIDDEN)
  assert v['params']['output']['kernel_0'].shape == (4 * HIDDEN, 7)
  assert_call_and_score_shapes(model, v, make_inputs(), VOCAB[0], HIDDEN)


def test_padding_changes_nothing():
  """A short window equals it left-padded to max_len (longer is an error); more padding
  before the behaviors (a longer max_len) changes no score; the padding item's embedding
  never reaches a real item's score."""
  model = make_model()
  assert_scores_ignore_padding(model, variables(model), make_inputs)


def test_training_loss_uses_the_scorer_of_evaluation():
  """The training loss is the softmax over the logits that `score_candidates` (and the
  chunked `score_items`) give the target and its negatives (no L2 terms here). As in the
  code, the metric weights reach the loss through the hard threshold only: no gradient but
  the L2 term's."""
  model = make_model()
  inputs, targets = make_inputs(seed=3), np.array([4, 9, 9, 0], np.int32)
  rngs = {'dropout': jax.random.key(1), 'negatives': jax.random.key(2)}
  v = variables(model)
  value, grads = jax.jit(jax.value_and_grad(lambda v_: model.apply(
      v_, dict(inputs=inputs, targets=targets), loss='sampled_softmax', num_negatives=3,
      rngs=rngs, method='training_loss')))(v)
  assert all(np.isfinite(g).all() for g in jax.tree_util.tree_leaves(grads))
  assert not np.asarray(grads['params']['metric_weights']).any()
  assert np.asarray(grads['params']['augru']['gates_kernel']).any()

  negatives = np.asarray(model.apply(v, jnp.asarray(targets), 3, method='negatives',
                                     rngs=rngs))
  candidates = np.concatenate([targets[:, None], negatives], axis=1)
  logits = np.asarray(jitted_method(model, 'score_candidates')(v, inputs, candidates),
                      np.float64)
  np.testing.assert_allclose(np.take_along_axis(score_items(model, v, inputs), candidates, 1),
                             logits, rtol=1e-5, atol=1e-6)
  real = targets > 0
  expected = (np.log(np.exp(logits).sum(-1)) - logits[:, 0])[real].mean()
  np.testing.assert_allclose(value, expected, rtol=1e-5)


@pytest.mark.parametrize('overrides, message', [
    (dict(relative_threshold=0.0), 'relative_threshold must lie in'),
    (dict(relative_threshold=1.5), 'relative_threshold must lie in'),
    (dict(pool_length=0), 'pool_length and metric_heads'),
    (dict(metric_heads=0), 'pool_length and metric_heads'),
    (dict(dropout=-0.1), 'dropout must lie in'),
    (dict(att_fcn_layer_sizes=(4, 0)), 'att_fcn_layer_sizes must hold positive'),
])
def test_bad_config_is_a_clear_error(overrides, message):
  with pytest.raises(ConfigError, match=f'surge {message}'):
    jax.eval_shape(lambda: make_model(**overrides).init(
        {'params': jax.random.key(0)}, make_inputs(), train=False))


def test_training_needs_sampled_losses_and_prefix_targets():
  model = make_model()
  assert_candidate_training_checks(model, variables(model), make_inputs())


def test_prefix_training_beats_popularity(tmp_path):
  # Smaller MLPs than the code's, and a larger start and lr: a few tiny epochs suffice.
  config = tiny_config('surge', train__num_epochs=3, train__lr=1e-2, model__hidden=16,
                       model__layer_sizes=(32,), model__att_fcn_layer_sizes=(16,),
                       model__init_std=0.1, **QUIET)
  assert_beats_popularity(train.train_and_evaluate(config, str(tmp_path)))


def test_trains_without_dropout_at_the_codes_widths():
  """With its L2 terms, no dropout (the MGNM table's setting) and the code's MLP widths,
  Adam moves the loss below chance on a fixed batch. (With this file's 5-unit MLPs and no
  dropout, every ReLU of the output MLP died within 10 steps and the loss stayed at chance:
  see the module doc.)"""
  model = make_model(embed_l2=1e-4, layer_l2=1e-4, dropout=0.0, hidden=16,
                     layer_sizes=(100, 64), att_fcn_layer_sizes=(80, 40))
  assert_loss_falls_from_chance(model, make_inputs())
