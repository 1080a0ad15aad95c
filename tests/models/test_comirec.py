"""Tests of ComiRec-DR and ComiRec-SA: the registered variants and their parameters, dynamic
routing with per-position, per-interest maps, the self-attentive heads, scoring by the max
over interests, the hard readout of the training loss, padding, config checks and
training."""

import functools

import jax
import numpy as np
import pytest

import configs.comirec_dr
import configs.comirec_sa
from pmix_jax import models, train
from pmix_jax.errors import ConfigError
from pmix_jax.models.comirec import ComiRec, ComiRecDR, ComiRecSA
from tests.conftest import tiny_config
from tests.models.common import (QUIET, assert_beats_popularity,
                                 assert_padding_embeddings_reach_no_score,
                                 assert_short_input_is_left_padded, float64, jitted_interests,
                                 inputs_maker, model_builder, numpy_normal_init, score_items)
from tests.models.test_mind import np_routing, np_softmax, np_softmax_loss

VOCAB = (31, 6)  # 30 items and a side field the models ignore.
MAX_LEN = 10
PADS = (0, 3, 7)
HIDDEN = 8  # D
INTERESTS = 3  # K
CONFIGS = {'comirec_dr': configs.comirec_dr, 'comirec_sa': configs.comirec_sa}
VARIANTS = sorted(CONFIGS)


def make_model(name, **overrides):
  return model_builder(CONFIGS[name], VOCAB, MAX_LEN, hidden=HIDDEN,
                       num_interests=INTERESTS)(**overrides)


make_inputs = inputs_maker(VOCAB, MAX_LEN, PADS, dtype=np.int32)


@functools.cache
def variables(name, **overrides):
  return numpy_normal_init(make_model(name, **overrides), make_inputs())


def interests(model, v, inputs):
  """`(interests [B, K, D], table [V, D])` in evaluation, in float64."""
  (q, table), _ = jitted_interests(model)(v, inputs, jax.random.key(0))
  return np.asarray(q, np.float64), np.asarray(table, np.float64)


def test_registry_and_configs():
  assert models.MODELS['comirec_dr'] is ComiRecDR and models.MODELS['comirec_sa'] is ComiRecSA
  for cls, extractor in [(ComiRecDR, 'dr'), (ComiRecSA, 'sa')]:
    assert issubclass(cls, ComiRec) and cls.extractor == extractor and cls.causal is False
  for name in VARIANTS:
    config = CONFIGS[name].get_config()
    assert config.model.name == name
    assert (config.model.hidden, config.model.num_interests, config.model.dropout) == (
        64, 4, 0.0)
    assert (config.train.targets, config.train.loss, config.train.num_negatives,
            config.train.batch_size, config.train.grad_clip_norm, config.data.max_len) == (
                'prefix', 'sampled_softmax', 2560, 256, 0.0, 50)
  dr = configs.comirec_dr.get_config().model
  assert (dr.routing_iterations, dr.routing_init) == (3, 'zeros')
  assert configs.comirec_sa.get_config().model.add_positions is True


@pytest.mark.parametrize('name, key, value', [('comirec_sa', 'routing_iterations', 3),
                                             ('comirec_dr', 'add_positions', True)])
def test_each_variant_takes_only_its_own_keys(name, key, value):
  cfg = CONFIGS[name].get_config().model
  with cfg.unlocked():
    cfg[key] = value
  with pytest.raises(ConfigError, match=f"has key.*{key}.* does not take"):
    models.build(cfg, vocab_sizes=VOCAB, max_len=MAX_LEN)


@pytest.mark.parametrize('name, overrides, expected', [
    ('comirec_dr', {}, {'bilinear': (MAX_LEN, INTERESTS, HIDDEN, HIDDEN)}),
    ('comirec_sa', {}, {'attention_heads': {'bias': (INTERESTS,),
                                            'kernel': (4 * HIDDEN, INTERESTS)},
                        'attention_hidden': {'bias': (4 * HIDDEN,),
                                             'kernel': (HIDDEN, 4 * HIDDEN)},
                        'position_embed': (MAX_LEN, HIDDEN)}),
    ('comirec_sa', dict(add_positions=False), {
        'attention_heads': {'bias': (INTERESTS,), 'kernel': (4 * HIDDEN, INTERESTS)},
        'attention_hidden': {'bias': (4 * HIDDEN,), 'kernel': (HIDDEN, 4 * HIDDEN)}}),
])
def test_contract_shapes_and_parameters(name, overrides, expected):
  """DR: one map per position and interest; SA: the heads' two dense layers (4D hidden)
  and the positions. hidden [B, 1, D] is the mean interest; score_items [B, V]."""
  model = make_model(name, **overrides)
  v = variables(name, **overrides)
  p = v['params']
  assert sorted(p) == ['interests', 'item_embed'] and p['item_embed'].shape == (VOCAB[0],
                                                                                  HIDDEN)
  assert jax.tree_util.tree_map(lambda w: w.shape, p['interests']) == expected
  inputs = make_inputs()
  hidden, table = jax.jit(lambda v_, x: model.apply(v_, x, train=False))(v, inputs)
  q, _ = interests(model, v, inputs)
  assert q.shape == (len(PADS), INTERESTS, HIDDEN)
  np.testing.assert_allclose(hidden[:, 0], q.mean(axis=1), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(table, p['item_embed'])
  assert score_items(model, v, inputs).shape == (len(PADS), VOCAB[0])


def test_dynamic_routing_interests_match_numpy():
  """ComiRec-DR: ê_{j|i} = W_ij e_i with W per position (counted from the latest behavior
  after left padding) and interest, zero initial logits, 3 iterations, no layer after."""
  model = make_model('comirec_dr')
  v = variables('comirec_dr')
  w = float64(v['params'])['interests']['bilinear']  # [L, K, D_out, D_in]
  inputs = make_inputs()
  q, table = interests(model, v, inputs)
  valid = inputs[..., 0] > 0
  e = table[inputs[..., 0]] * valid[..., None]
  expected = []
  for b in range(len(PADS)):
    u = np.stack([np.stack([w[i, j] @ e[b, i] for i in range(MAX_LEN)])
                  for j in range(INTERESTS)])  # [K, L, D]
    expected.append(np_routing(u, valid[b], np.zeros((INTERESTS, MAX_LEN)), 3))
  np.testing.assert_allclose(q, np.stack(expected), rtol=1e-4, atol=1e-6)
  assert (np.linalg.norm(q, axis=-1) < 1).all()  # Squashed capsules.


@pytest.mark.parametrize('add_positions', [True, False])
def test_self_attentive_interests_match_numpy(add_positions):
  """ComiRec-SA: A = softmax_L(W_2^T tanh(W_1 (H + P) + b_1) + b_2) over the real behaviors,
  V_u = A^T H, with the positions P in the attention's input only."""
  model = make_model('comirec_sa', add_positions=add_positions)
  v = variables('comirec_sa', add_positions=add_positions)
  p = float64(v['params'])['interests']
  inputs = make_inputs()
  q, table = interests(model, v, inputs)
  valid = inputs[..., 0] > 0
  h = table[inputs[..., 0]] * valid[..., None]
  x = h + p['position_embed'] if add_positions else h
  hidden = np.tanh(x @ p['attention_hidden']['kernel'] + p['attention_hidden']['bias'])
  logits = hidden @ p['attention_heads']['kernel'] + p['attention_heads']['bias']  # [B, L, K]
  logits = np.where(valid[..., None], logits, -np.inf)
  weights = np_softmax(logits, axis=1)
  expected = np.einsum('blk,bld->bkd', weights, h)
  np.testing.assert_allclose(q, expected, rtol=1e-4, atol=1e-6)
  assert not np.allclose(q[:, 0], q[:, 1], atol=1e-3)  # K different heads.


@pytest.mark.parametrize('name', VARIANTS)
def test_score_items_is_the_max_over_interests(name):
  model, v, inputs = make_model(name), variables(name), make_inputs()
  q, table = interests(model, v, inputs)
  per_interest = np.einsum('bkd,vd->bkv', q, table)
  np.testing.assert_allclose(score_items(model, v, inputs), per_interest.max(axis=1), rtol=1e-4,
                             atol=1e-5)
  assert len(np.unique(per_interest.argmax(axis=1))) > 1


@pytest.mark.parametrize('name', VARIANTS)
def test_training_loss_reads_out_the_argmax_interest(name):
  """The loss (here the full softmax) of the interest most aligned with each target,
  averaged over real targets (a filler row with target 0 counts for nothing); other
  readouts give other losses. Gradients are finite."""
  model, v = make_model(name), variables(name)
  inputs = np.concatenate([make_inputs(seed=3, pads=(0, 3, 7, 1, 0)),
                           np.zeros((1, MAX_LEN, 2), np.int32)])
  targets = np.array([4, 9, 9, 17, 2, 0], np.int32)
  rngs = {'dropout': jax.random.key(1), 'negatives': jax.random.key(2)}
  loss, grads = jax.jit(jax.value_and_grad(lambda v_: model.apply(
      v_, dict(inputs=inputs, targets=targets), loss='softmax', num_negatives=1, rngs=rngs,
      method='training_loss')))(v)
  assert all(np.isfinite(g).all() for g in jax.tree_util.tree_leaves(grads))
  q, table = interests(model, v, inputs)  # No dropout: training computes the same.
  chosen = np.einsum('bkd,bd->bk', q, table[targets]).argmax(-1)
  assert len(np.unique(chosen[targets > 0])) > 1
  rows = np.arange(len(targets))
  np.testing.assert_allclose(loss, np_softmax_loss(q[rows, chosen], table, targets),
                             rtol=1e-5)
  assert not np.isclose(loss, np_softmax_loss(q.mean(1), table, targets), rtol=1e-3)
  assert not np.isclose(loss, np_softmax_loss(q[rows, (chosen + 1) % INTERESTS], table,
                                              targets), rtol=1e-3)


@pytest.mark.parametrize('name', VARIANTS)
def test_padding_changes_nothing(name):
  """A short window equals it left-padded to max_len (longer is an error), and the padding
  item's embedding never reaches a real item's score."""
  model = make_model(name)
  assert_short_input_is_left_padded(model, make_inputs, score_items, MAX_LEN)
  assert_padding_embeddings_reach_no_score(model, variables(name), make_inputs())


@pytest.mark.parametrize('name, overrides, message', [
    ('comirec_dr', dict(num_interests=0), 'num_interests must be at least 1'),
    ('comirec_sa', dict(num_interests=0), 'num_interests must be at least 1'),
    ('comirec_sa', dict(dropout=1.0), 'dropout must lie in'),
    ('comirec_dr', dict(routing_iterations=0), 'routing_iterations must be at least 1'),
    ('comirec_dr', dict(routing_init='normal'), 'routing_init must be one of'),
])
def test_bad_config_is_a_clear_error(name, overrides, message):
  model = make_model(name, **overrides)
  with pytest.raises(ConfigError, match=f'{name} {message}'):
    jax.eval_shape(lambda: model.init({'params': jax.random.key(0)}, make_inputs(),
                                      train=False))


@pytest.mark.parametrize('name', VARIANTS)
def test_training_needs_prefix_targets(name):
  model, v, inputs = make_model(name), variables(name), make_inputs()
  with pytest.raises(ConfigError, match=f"{name} scores one target per row"):
    jax.eval_shape(lambda: model.apply(
        v, dict(inputs=inputs, targets=inputs[..., 0]), loss='softmax', num_negatives=1,
        method='training_loss', rngs={'negatives': jax.random.key(1)}))


@pytest.mark.parametrize('name', VARIANTS)
def test_prefix_training_beats_popularity(name, tmp_path):
  config = tiny_config(name, train__num_epochs=2, train__lr=1e-2, **QUIET)
  assert_beats_popularity(train.train_and_evaluate(config, str(tmp_path)))
