"""Tests of A2SVD and SLi-Rec: the attention pooling, the LSTM, the target-aware attention and
the adaptive fusion against numpy, padding, chunked scoring against the training scorer, the
loss and its regularisation, config checks and training."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import configs.a2svd
import configs.sli_rec
from pmix_jax import models, train
from pmix_jax.errors import ConfigError
from pmix_jax.models import sli_rec
from tests.conftest import tiny_config
from tests.models.common import (QUIET, assert_beats_popularity,
                                 assert_candidate_training_checks, assert_loss_falls_from_chance,
                                 assert_negatives_are_uniform,
                                 assert_call_and_score_shapes, assert_scores_ignore_padding,
                                 float64, inputs_with_users, jitted_method, numpy_normal_init,
                                 score_items)

VOCAB = (31, 6)  # 30 items; the derived user field: 5 users.
MAX_LEN = 10
PADS = (0, 3, 7, MAX_LEN)  # The last row has no behavior at all.
HIDDEN = 6  # E
CONFIGS = dict(a2svd=configs.a2svd, sli_rec=configs.sli_rec)


def make_model(name, vocab=VOCAB, **overrides):
  """The test model: small MLPs, dropout (which evaluation must ignore), score_items in chunks
  of 2 items (the last one padded), which the tests compare with unchunked
  `score_candidates`."""
  cfg = CONFIGS[name].get_config().model
  cfg.update(dict(hidden=HIDDEN, dropout=0.3, layer_sizes=(7, 5), score_chunk=2 * len(PADS)))
  if name == 'sli_rec':
    cfg.att_fcn_layer_sizes = (9, 4)
  cfg.update(overrides)
  return models.build(cfg, vocab_sizes=vocab, max_len=MAX_LEN)


def make_inputs(seed=0, length=MAX_LEN, pads=PADS):
  return inputs_with_users(VOCAB, length=length, pads=pads, seed=seed)


@functools.cache
def variables(model):
  return numpy_normal_init(model, make_inputs())


# Numpy references, in float64.

def np_sigmoid(x):
  return 1 / (1 + np.exp(-x))


def np_masked_softmax(logits, valid):
  logits = np.where(valid, logits, -np.inf)
  if not valid.any():
    return np.full(logits.shape, 1 / logits.size)
  e = np.exp(logits - logits.max())
  return e / e.sum()


def np_fcn(p, x):
  """The code's `_fcn_net` on the concatenated `x` [..., F] -> [...]."""
  h = x @ p['kernel_0'] + p['bias_0']
  i = 1
  while f'layer_{i}' in p:
    h = np.maximum(h, 0) @ p[f'layer_{i}']['kernel'] + p[f'layer_{i}']['bias']
    i += 1
  return h[..., 0]


def np_long_term(p, items, users, use_user):
  """Eq. 1-2 for one row: `Σ_j softmax_j((x_j W) · q) x_j` (+ p_u)."""
  valid = items > 0
  x = p['item_embed'][items] * valid[:, None]
  weights = np_masked_softmax(x @ p['pooling']['attention_mat'] @ p['pooling']['query'], valid)
  long = weights @ x
  user = users.max()
  return long + p["user_embed"][user] * (user > 0) if use_user else long


def np_lstm(p, x, valid):
  """Eq. 5 for one row, one step at a time over the real behaviors (TF's i, j, f, o)."""
  size = p['bias'].shape[0] // 4
  c, h = np.zeros(size), np.zeros(size)
  out = np.zeros((len(x), size))
  for t in np.flatnonzero(valid):
    i, j, f, o = np.split(np.concatenate([x[t], h]) @ p['kernel'] + p['bias'], 4)
    c = np_sigmoid(f + 1) * c + np_sigmoid(i) * np.tanh(j)
    h = np_sigmoid(o) * np.tanh(c)
    out[t] = h
  return out


def np_scores(model, params, inputs):
  """`[B, V]` logits of every item, one row and one item at a time."""
  p = float64(params['params'])
  table = p['item_embed']
  out = np.zeros((len(inputs), VOCAB[0]))
  for b, row in enumerate(inputs):
    items, valid = row[:, 0], row[:, 0] > 0
    long = np_long_term(p, items, row[:, 1], model.use_user)
    if model.NAME == 'sli_rec':
      states = np_lstm(p['lstm'], table[items] * valid[:, None], valid)
      keys = states @ p['attention']['attention_mat']
    for v in range(VOCAB[0]):
      t = table[v]
      if model.NAME == 'a2svd':
        user = long
      else:
        q = np.broadcast_to(t, keys.shape)
        attention = np_fcn(p['attention']['fcn'],
                           np.concatenate([keys, q, keys - q, keys * q], -1))  # Eq. 6
        short = np_masked_softmax(attention, valid) @ states
        alpha = np_sigmoid(np_fcn(p['fusion'], np.concatenate([t, long, short])))  # Eq. 7
        user = alpha * long + (1 - alpha) * short
      out[b, v] = np_fcn(p['output'], np.concatenate([user, t]))  # Eq. 3, 8
  return out


@pytest.mark.parametrize('name, use_user', [('a2svd', False), ('a2svd', True),
                                            ('sli_rec', False), ('sli_rec', True)])
def test_scores_match_numpy(name, use_user):
  """Eq. 1-3 (A2SVD) and Eq. 4-8 (SLi-Rec), with and without the user factor, for every
  item: the attention MLP on the full concatenation [k ; e ; k - e ; k ⊙ e]."""
  model = make_model(name, use_user=use_user)
  inputs = make_inputs()
  v = variables(model)
  np.testing.assert_allclose(score_items(model, v, inputs), np_scores(model, v, inputs),
                             rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('name', ['a2svd', 'sli_rec'])
def test_registry_shapes_and_call(name):
  """Built by name from the config; `__call__` gives the user vector of the latest behavior
  as the candidate `[B, 1, E]` and the item table, and creates every parameter."""
  model = make_model(name, use_user=True)
  assert type(model) is models.MODELS[name] and not model.causal
  v = variables(model)
  expected = {'item_embed', 'user_embed', 'pooling', 'output'}
  if name == 'sli_rec':
    expected |= {'lstm', 'attention', 'fusion'}
  assert set(v['params']) == expected
  assert v['params']['output']['kernel_0'].shape == (2 * HIDDEN, 7)
  inputs = make_inputs()
  hidden = assert_call_and_score_shapes(model, v, inputs, VOCAB[0], HIDDEN)
  if name == 'a2svd':
    p = float64(v['params'])
    np.testing.assert_allclose(
        hidden[0, 0], np_long_term(p, inputs[0, :, 0], inputs[0, :, 1], True), rtol=1e-5)


@pytest.mark.parametrize('name', ['a2svd', 'sli_rec'])
def test_padding_changes_nothing(name):
  """A short window equals it left-padded to max_len (longer is an error); more padding
  before the behaviors (a longer max_len) changes no score; the padding item's and padding
  user's embeddings never reach a real item's score."""
  model = make_model(name, use_user=True)
  assert_scores_ignore_padding(model, variables(model), make_inputs, users=True, rtol=1e-6,
                               atol=1e-7)


def np_candidate_loss(logits, targets, loss):
  log_sigmoid = lambda t: -np.logaddexp(0, -t)
  if loss == 'sampled_softmax':
    per_row = np.log(np.exp(logits).sum(-1)) - logits[:, 0]
  elif loss == 'bce':
    per_row = -log_sigmoid(logits[:, 0]) - log_sigmoid(-logits[:, 1:]).sum(-1)
  else:
    per_row = -log_sigmoid(logits[:, :1] - logits[:, 1:]).mean(-1)
  return per_row[targets > 0].mean()


@pytest.mark.parametrize('loss', sli_rec.LOSSES)
def test_candidate_losses_match_numpy(loss):
  logits = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
  targets = np.array([4, 9, 0, 2], np.int32)  # The third is a filler row.
  np.testing.assert_allclose(sli_rec.candidate_loss(logits, targets, loss),
                             np_candidate_loss(logits.astype(np.float64), targets, loss),
                             rtol=1e-5)


@pytest.mark.parametrize('name', ['a2svd', 'sli_rec'])
def test_training_loss_uses_the_scorer_of_evaluation(name, loss='sampled_softmax'):
  """The training loss (without dropout) is `loss` on the logits that `score_candidates`
  (and the chunked `score_items`) give the target and its negatives (uniform, never the
  target), averaged over real targets (a filler row with target 0 counts for nothing), plus
  embed_l2 * ½ Σ |e|² over the distinct embedding rows the batch touches and
  layer_l2 * ½ Σ θ² over the rest."""
  embed_l2, layer_l2, num_negatives = 1e-2, 1e-3, 4
  model = make_model(name, use_user=True, embed_l2=embed_l2, layer_l2=layer_l2, dropout=0.0)
  inputs, targets = make_inputs(seed=3), np.array([4, 9, 9, 0], np.int32)
  rngs = {'dropout': jax.random.key(1), 'negatives': jax.random.key(2)}
  v = variables(model)
  value, grads = jax.jit(jax.value_and_grad(lambda v_: model.apply(
      v_, dict(inputs=inputs, targets=targets), loss=loss, num_negatives=num_negatives,
      rngs=rngs, method='training_loss')))(v)
  assert all(np.isfinite(g).all() for g in jax.tree_util.tree_leaves(grads))

  negatives = np.asarray(model.apply(v, jnp.asarray(targets), num_negatives,
                                     method='negatives', rngs=rngs))
  assert ((negatives >= 1) & (negatives < VOCAB[0]) & (negatives != targets[:, None])).all()
  candidates = np.concatenate([targets[:, None], negatives], axis=1)
  logits = np.asarray(jitted_method(model, 'score_candidates')(v, inputs, candidates),
                      np.float64)
  np.testing.assert_allclose(logits,
                             np.take_along_axis(score_items(model, v, inputs), candidates, 1),
                             rtol=1e-5, atol=1e-6)

  p = float64(v['params'])
  rows = np.setdiff1d(np.concatenate([inputs[..., 0].ravel(), candidates.ravel()]), [0])
  users = np.setdiff1d(inputs[..., 1].ravel(), [0])
  embed = 0.5 * (np.sum(p['item_embed'][rows]**2) + np.sum(p['user_embed'][users]**2))
  layers = 0.5 * sum(np.sum(leaf**2) for key, tree in p.items()
                     if key not in ('item_embed', 'user_embed')
                     for leaf in jax.tree_util.tree_leaves(tree))
  expected = np_candidate_loss(logits, targets, loss) + embed_l2 * embed + layer_l2 * layers
  np.testing.assert_allclose(value, expected, rtol=1e-5)
  assert embed_l2 * embed > 1e-3 * expected and layer_l2 * layers > 1e-3 * expected


def test_negatives_are_uniform_over_other_items():
  model = make_model('a2svd')
  assert_negatives_are_uniform(model, variables(model), VOCAB[0])


def test_dropout_acts_in_training():
  """Dropout (on the hidden MLP layers) changes the training loss with its key (the numpy
  tests show that evaluation ignores it)."""
  model = make_model('sli_rec')
  assert model.dropout > 0
  loss = jax.jit(lambda key: model.apply(
      variables(model), dict(inputs=make_inputs(), targets=np.array([4, 9, 9, 0], np.int32)),
      loss='sampled_softmax', num_negatives=2, method='training_loss',
      rngs={'dropout': key, 'negatives': jax.random.key(0)}))
  assert loss(jax.random.key(0)) == loss(jax.random.key(0))
  assert loss(jax.random.key(0)) != loss(jax.random.key(1))


@pytest.mark.parametrize('name, overrides, message', [
    ('a2svd', dict(dropout=1.0), 'dropout must lie in'),
    ('a2svd', dict(layer_sizes=(8, 0)), 'layer_sizes must hold positive widths'),
    ('sli_rec', dict(att_fcn_layer_sizes=(0,)), 'att_fcn_layer_sizes must hold positive'),
    ('a2svd', dict(embed_l2=-1.0), 'embed_l2 and layer_l2'),
    ('sli_rec', dict(layer_l2=-1.0), 'embed_l2 and layer_l2'),
    ('a2svd', dict(score_chunk=0), 'score_chunk must be at least 1'),
    ('sli_rec', dict(init_std=0.0), 'init_std must be > 0'),
    ('sli_rec', dict(hidden=0), 'hidden must be at least 1'),
])
def test_bad_config_is_a_clear_error(name, overrides, message):
  with pytest.raises(ConfigError, match=f'{name} {message}'):
    jax.eval_shape(lambda: make_model(name, **overrides).init(
        {'params': jax.random.key(0)}, make_inputs(), train=False))


@pytest.mark.parametrize('name', ['a2svd', 'sli_rec'])
def test_training_needs_sampled_losses_prefix_targets_and_a_user_field(name):
  model = make_model(name)
  inputs = make_inputs()
  assert_candidate_training_checks(model, variables(model), inputs)
  with pytest.raises(ConfigError, match="add 'user' to config.data.features"):
    jax.eval_shape(lambda: make_model(name, vocab=VOCAB[:1], use_user=True).init(
        {'params': jax.random.key(0)}, inputs[..., :1], train=False))
  # Without the user factor (the code's default) the user field is not needed.
  jax.eval_shape(lambda: make_model(name, vocab=VOCAB[:1]).init(
      {'params': jax.random.key(0)}, inputs[..., :1], train=False))


@pytest.mark.parametrize('name', ['a2svd', 'sli_rec'])
def test_prefix_training_beats_popularity(tmp_path, name):
  # The code's N(0, 0.01) start and lr learn only popularity in a few tiny epochs.
  config = tiny_config(name, train__num_epochs=3, train__lr=1e-2, model__hidden=16,
                       model__init_std=0.1, **QUIET)
  assert_beats_popularity(train.train_and_evaluate(config, str(tmp_path)))



@pytest.mark.parametrize('name', ['a2svd', 'sli_rec'])
def test_no_dropout_and_layer_l2_do_not_collapse_the_network(name):
  """Without the code's batch normalisation, its N(0, 0.01) MLP kernels, the layer L2 term
  and no dropout drove every MLP weight to zero on Toys: the logits became one constant and
  the loss stuck at log(1 + n)."""
  assert_loss_falls_from_chance(make_model(name, dropout=0.0), make_inputs())
