"""Tests of MIMN: one step of the UIC memory (content addressing, shift and sharpening,
erase/add write, read) and of the MIU against numpy, the whole network's scores against
numpy, padding, chunked scoring against the training scorer and the utilisation term,
config checks and training."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import configs.mimn
from pmix_jax import models, train
from pmix_jax.errors import ConfigError
from tests.conftest import tiny_config
from tests.models.common import (QUIET, assert_beats_popularity,
                                 assert_candidate_training_checks, assert_call_and_score_shapes,
                                 assert_loss_falls_from_chance,
                                 assert_oldest_and_latest_behaviors_matter,
                                 assert_scores_ignore_padding, float64, inputs_maker,
                                 jitted_method, model_builder, numpy_normal_init, score_items)
from tests.models.test_sli_rec import np_fcn, np_sigmoid
from tests.models.test_surge import np_attention

VOCAB = (31,)  # 30 items.
MAX_LEN = 10
PADS = (0, 3, 9, MAX_LEN)  # 10, 7, 1 and 0 behaviors.
HIDDEN = 6  # E
UNITS = 5  # H
SLOTS = 4  # m

# The test model: small MLPs, no L2 terms, score_items in chunks of 3 items (the last one
# padded), which the tests compare with unchunked `score_candidates`.
make_model = model_builder(configs.mimn, VOCAB, MAX_LEN, hidden=HIDDEN, controller_units=UNITS,
                           memory_size=SLOTS, dropout=0.0, layer_sizes=(7, 5),
                           att_fcn_layer_sizes=(9, 4), embed_l2=0.0, layer_l2=0.0,
                           score_chunk=3 * len(PADS))
make_inputs = inputs_maker(VOCAB, MAX_LEN, PADS, dtype=np.int32)


@functools.cache
def variables(model):
  return numpy_normal_init(model, make_inputs())


# Numpy references, in float64, one row at a time, written from the code's formulas (its
# circulant shift matrix and w^γ sharpening, not the model's roll and log form).

def np_softplus(x):
  return np.log1p(np.exp(x))


def np_softmax(x):
  e = np.exp(x - x.max())
  return e / e.sum()


def np_gru(p, x, h):
  """TF's GRUCell: gates from [x ; h], candidate from [x ; r ⊙ h]."""
  r, u = np.split(np_sigmoid(np.concatenate([x, h]) @ p['gates_kernel'] + p['gates_bias']), 2)
  c = np.tanh(np.concatenate([x, r * h]) @ p['candidate_kernel'] + p['candidate_bias'])
  return u * h + (1 - u) * c


def np_address(head, key_memory, memory):
  size = memory.shape[1]
  k = np.tanh(head[:size])
  beta = (np_softplus(head[size]) + 1) * 2
  cos = lambda m: m @ k / (np.linalg.norm(m, axis=1) * np.linalg.norm(k) + 1e-8)
  return np_softmax(beta * 0.5 * (cos(key_memory) + cos(memory)))


def np_overflow(w, head):
  """The code's `capacity_overflow`: circulant matrix of the shifts (0, +1, -1), w^γ / Σ."""
  m, size = len(w), len(head) - 6
  s = np_softmax(head[size + 2:size + 5])
  gamma = 2 * (np_softplus(head[-1]) + 1) * 2
  s = np.concatenate([s[:2], np.zeros(m - 3), s[-1:]])
  t = np.concatenate([s[::-1], s[::-1]])
  matrix = np.stack([t[m - i - 1:2 * m - i - 1] for i in range(m)])
  shifted = (w[None, :] * matrix).sum(1)
  return shifted ** gamma / (shifted ** gamma).sum()


def np_step(p, model, state, x):
  """One behavior: controller, heads, addressing (+ overflow), read, MIU, erase/add write."""
  size, head = model.hidden, model.hidden + 6
  h = np_gru(p['controller'], np.concatenate([x, state['read']]), state['controller'])
  par_in = np.concatenate([h, state['usage'] / 400]) if model.utilisation_regularisation else h
  params = np.clip(par_in @ p['heads']['kernel'] + p['heads']['bias'], -20, 20)
  read_head, write_head = params[:head], params[head:2 * head]
  erase, add = np_sigmoid(params[2 * head:2 * head + size]), np.tanh(params[2 * head + size:])
  key_memory, memory = np.tanh(p['key_memory']), state['memory']
  read_w = np_address(read_head, key_memory, memory)
  write_w = np_address(write_head, key_memory, memory)
  used = write_w
  if model.utilisation_regularisation:
    write_w = np_overflow(write_w, write_head)
    used = np_overflow(write_w, write_head)
  new = dict(controller=h, read=read_w @ memory, usage=state['usage'] + used,
             added=state['added'] + add,
             memory=memory * (1 - np.outer(write_w, erase)) + np.outer(write_w, add))
  if model.memory_induction:
    channels = state['channels'].copy()
    for i in np.argsort(-read_w, kind='stable')[:model.induction_top_k]:
      channels[i] = np_gru(p['channel_gru'], np.concatenate([x, memory[i]]), channels[i])
    new['channels'] = channels
  return new


def np_initial_state(p, model):
  size, slots = model.hidden, model.memory_size
  memory = np.tanh(np.random.default_rng(0).normal(0, 1e-5, (slots, size)))
  return dict(controller=np.zeros(model.controller_units), read=np.tanh(p['initial_read'][0]),
              memory=memory, usage=np.zeros(slots), added=np.zeros(size),
              channels=np.zeros((slots, size)))


def np_logit(p, model, items, t):
  """The whole network for one row and one candidate embedding `t`."""
  x = p['item_embed'][items] * (items > 0)[:, None]
  state = np_initial_state(p, model)
  for j in np.flatnonzero(items > 0):
    state = np_step(p, model, state, x[j])
  head = model.hidden + 6
  h = np_gru(p['controller'], np.concatenate([t, state['read']]), state['controller'])
  par_in = np.concatenate([h, state['usage'] / 400]) if model.utilisation_regularisation else h
  read_head = np.clip(par_in @ p['heads']['kernel'][:, :head] + p['heads']['bias'][:head],
                      -20, 20)
  vector = np_address(read_head, np.tanh(p['key_memory']), state['memory']) @ state['memory']
  output = np.clip(np.concatenate([h, vector]) @ p['readout']['kernel'] + p['readout']['bias'],
                   -20, 20)
  parts = [t, x.sum(0), output]
  if model.memory_induction:
    channels = state['channels']
    weights = np_attention(p['channel_attention'], channels, t, np.ones(len(channels), bool))
    parts.append(weights @ channels)
  parts.append(state['added'] / model.memory_size * t)
  return np_fcn(p['output'], np.concatenate(parts)), state


def test_one_memory_step_matches_numpy():
  """One UIC step from a random state: the controller GRU, content addressing (cosine with
  the slot keys and the memory), the write head's shift and sharpening and the usage, the
  read from the memory before the write, the MIU update of the top-1 channel and the
  erase/add write; a padding row keeps its whole state."""
  model = make_model()
  v = variables(model)
  p = float64(v['params'])
  rng = np.random.default_rng(5)
  state = dict(controller=rng.normal(size=(2, UNITS)), read=rng.normal(size=(2, HIDDEN)),
               memory=rng.normal(size=(2, SLOTS, HIDDEN)), usage=rng.uniform(0, 9, (2, SLOTS)),
               added=rng.normal(size=(2, HIDDEN)), channels=rng.normal(size=(2, SLOTS, HIDDEN)))
  x = rng.normal(size=(2, HIDDEN))
  step = jax.jit(lambda v_, s, x_: model.apply(
      v_, s, x_, jnp.array([True, False]),
      method=lambda m, *args: m.step(m.weights(), *args)))
  new = step(v, jax.tree_util.tree_map(lambda a: a.astype(np.float32), state),
             x.astype(np.float32))
  expected = np_step(p, model, {k: a[0] for k, a in state.items()}, x[0])
  for name, value in expected.items():
    np.testing.assert_allclose(new[name][0], value, rtol=1e-4, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(new[name][1], state[name][1], rtol=1e-6, err_msg=name)
  changed = np.abs(new['channels'][0] - state['channels'][0]).max(-1) > 0
  assert changed.sum() == 1  # The top-1 channel only.


@pytest.mark.parametrize('overrides', [
    dict(induction_top_k=2),
    dict(memory_induction=False, utilisation_regularisation=False),
])
def test_scores_match_numpy(overrides):
  """The recurrence over the real behaviors, the cell's step with the candidate, the channel
  attention and the prediction MLP on [e ; Σx ; o ; c ; m̄ ⊙ e], for several candidates."""
  model = make_model(**overrides)
  inputs = make_inputs()
  v = variables(model)
  p = float64(v['params'])
  candidates = np.array([[1, 5, 17, 30]] * len(PADS), np.int32)
  logits = np.asarray(jitted_method(model, 'score_candidates')(v, inputs, candidates))
  for b, row in enumerate(inputs):
    for c, item in enumerate(candidates[b]):
      expected, _ = np_logit(p, model, row[:, 0], p['item_embed'][item])
      np.testing.assert_allclose(logits[b, c], expected, rtol=1e-4, atol=1e-5)


def test_registry_shapes_and_call():
  """Built by name; `__call__` gives r' with the latest behavior as candidate `[B, 1, E]`;
  not causal, and both ends of the history reach it."""
  model = make_model()
  assert type(model) is models.MODELS['mimn'] and not model.causal
  v = variables(model)
  assert set(v['params']) == {'item_embed', 'controller', 'heads', 'readout', 'key_memory',
                              'initial_read', 'channel_gru', 'channel_attention', 'output'}
  assert v['params']['heads']['kernel'].shape == (UNITS + SLOTS, 2 * (HIDDEN + 6) + 2 * HIDDEN)
  assert v['params']['controller']['gates_kernel'].shape == (2 * HIDDEN + UNITS, 2 * UNITS)
  assert v['params']['output']['kernel_0'].shape == (4 * HIDDEN + UNITS, 7)
  inputs = make_inputs()
  assert_call_and_score_shapes(model, v, inputs, VOCAB[0], HIDDEN)
  assert_oldest_and_latest_behaviors_matter(model, v, inputs[:3], PADS[:3], VOCAB[0],
                                            atol=1e-6)


def test_padding_changes_nothing():
  """A short window equals it left-padded to max_len (longer is an error); more padding
  before the behaviors (a longer max_len) changes no score; the padding item's embedding
  never reaches a real item's score."""
  model = make_model()
  assert_scores_ignore_padding(model, variables(model), make_inputs)


def test_training_loss_uses_the_scorer_of_evaluation():
  """The training loss is the softmax over the logits that `score_candidates` (and the
  chunked `score_items`) give the target and its negatives, plus utilisation_weight times
  the mean over real targets of the usage's variance over the slots."""
  weight = 0.1
  model = make_model(utilisation_weight=weight)
  inputs, targets = make_inputs(seed=3), np.array([4, 9, 9, 0], np.int32)
  rngs = {'dropout': jax.random.key(1), 'negatives': jax.random.key(2)}
  v = variables(model)
  value, grads = jax.jit(jax.value_and_grad(lambda v_: model.apply(
      v_, dict(inputs=inputs, targets=targets), loss='sampled_softmax', num_negatives=3,
      rngs=rngs, method='training_loss')))(v)
  leaves = jax.tree_util.tree_leaves(grads)
  assert all(np.isfinite(g).all() for g in leaves)
  assert np.asarray(grads['params']['channel_gru']['gates_kernel']).any()
  assert np.asarray(grads['params']['key_memory']).any()

  negatives = np.asarray(model.apply(v, jnp.asarray(targets), 3, method='negatives',
                                     rngs=rngs))
  candidates = np.concatenate([targets[:, None], negatives], axis=1)
  logits = np.asarray(jitted_method(model, 'score_candidates')(v, inputs, candidates),
                      np.float64)
  np.testing.assert_allclose(np.take_along_axis(score_items(model, v, inputs), candidates, 1),
                             logits, rtol=1e-5, atol=1e-6)
  p = float64(v['params'])
  usage = np.stack([np_logit(p, model, row[:, 0], p['item_embed'][1])[1]['usage']
                    for row in inputs])
  real = targets > 0
  expected = ((np.log(np.exp(logits).sum(-1)) - logits[:, 0])[real].mean()
              + weight * usage.var(-1)[real].mean())
  assert usage.var(-1)[:3].min() > 0.01  # The term is there to be checked.
  np.testing.assert_allclose(value, expected, rtol=1e-5)


@pytest.mark.parametrize('overrides, message', [
    (dict(memory_size=0), 'memory_size and controller_units must be at least 1'),
    (dict(controller_units=0), 'memory_size and controller_units must be at least 1'),
    (dict(induction_top_k=0), r'induction_top_k must lie in \[1, memory_size = 4\]'),
    (dict(induction_top_k=5), r'induction_top_k must lie in \[1, memory_size = 4\]'),
    (dict(utilisation_weight=-1.0), 'utilisation_weight must be >= 0'),
    (dict(dropout=1.0), 'dropout must lie in'),
    (dict(layer_sizes=(4, 0)), 'layer_sizes must hold positive'),
])
def test_bad_config_is_a_clear_error(overrides, message):
  with pytest.raises(ConfigError, match=f'mimn {message}'):
    jax.eval_shape(lambda: make_model(**overrides).init(
        {'params': jax.random.key(0)}, make_inputs(), train=False))


def test_training_needs_sampled_losses_and_prefix_targets():
  model = make_model()
  assert_candidate_training_checks(model, variables(model), make_inputs())


def test_trains_without_dropout_at_the_codes_widths():
  """No dropout (the code's and the MGNM table's setting), the code's MLP widths and memory:
  Adam moves the loss on a fixed batch well below chance."""
  model = make_model(hidden=16, controller_units=32, layer_sizes=(200, 80),
                     att_fcn_layer_sizes=(80, 40))
  assert model.dropout == 0.0
  assert_loss_falls_from_chance(model, make_inputs())


def test_prefix_training_beats_popularity(tmp_path):
  # A larger start and lr than the code's: a few tiny epochs suffice.
  config = tiny_config('mimn', train__num_epochs=3, train__lr=1e-2, model__hidden=16,
                       model__controller_units=16, model__layer_sizes=(32,),
                       model__att_fcn_layer_sizes=(16,), model__init_std=0.1, **QUIET)
  assert_beats_popularity(train.train_and_evaluate(config, str(tmp_path)))
