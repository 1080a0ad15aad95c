"""Tests of the SASRec model: shapes, causality and use of the item field only."""

import jax
import numpy as np
import pytest

import configs.sasrec
from pmix_jax import models
from pmix_jax.models.sasrec import SASRec
from tests.models import common
from tests.models.common import (BATCH, MAX_LEN, PADS, VOCAB, assert_dropout_is_keyed,
                                 flax_init, inputs_maker, model_builder)

make_model = model_builder(configs.sasrec, VOCAB, MAX_LEN, hidden=16)
make_inputs = inputs_maker(VOCAB, MAX_LEN, PADS)
init = flax_init


def test_registry():
  """The registry maps 'sasrec' to SASRec, which is causal."""
  assert models.MODELS['sasrec'] is SASRec
  assert SASRec.causal is True
  assert isinstance(make_model(), SASRec)


def test_shapes_and_item_table():
  """hidden is [B, L, D] and item_table is the `item_embed` parameter [V0, D]."""
  model = make_model()
  inputs = make_inputs()
  variables = init(model, inputs)
  hidden, table = model.apply(variables, inputs, train=False)
  assert hidden.shape == (BATCH, MAX_LEN, 16)
  assert table.shape == (VOCAB[0], 16)
  np.testing.assert_array_equal(table, variables['params']['item_embed']['embedding'])


def test_shorter_sequence_than_max_len():
  """Inputs shorter than max_len give one state per input position."""
  model = make_model()
  inputs = make_inputs(length=8, pads=(0, 2, 5))
  hidden, _ = model.apply(init(model, inputs), inputs, train=False)
  assert hidden.shape == (BATCH, 8, 16)


def perturb_future(inputs, t, seed):
  return common.perturb_future(inputs, t, seed, vocab=VOCAB)


@pytest.mark.parametrize('pre_norm', [True, False])
@pytest.mark.parametrize('train', [False, True])
def test_no_future_leakage(pre_norm, train):
  """hidden[:, :t+1] does not change when positions > t change (eval and train mode)."""
  model = make_model(pre_norm=pre_norm, num_heads=2)
  inputs = make_inputs()
  variables = init(model, inputs)
  rngs = {'dropout': jax.random.key(7)} if train else {}
  base, _ = model.apply(variables, inputs, train=train, rngs=rngs)
  for t in (0, 3, 6, 9, 10):
    changed = perturb_future(inputs, t, seed=t)
    hidden, _ = model.apply(variables, changed, train=train, rngs=rngs)
    np.testing.assert_allclose(hidden[:, :t + 1], base[:, :t + 1], atol=1e-5)
    assert not np.allclose(hidden[:, t + 1:], base[:, t + 1:], atol=1e-5)


def test_past_affects_present():
  """Changing an earlier item changes the state at the last position (attention works)."""
  model = make_model()
  inputs = make_inputs()
  variables = init(model, inputs)
  base, _ = model.apply(variables, inputs, train=False)
  changed = inputs.copy()
  changed[0, 2, 0] = changed[0, 2, 0] % (VOCAB[0] - 1) + 1
  hidden, _ = model.apply(variables, changed, train=False)
  assert not np.allclose(hidden[0, -1], base[0, -1], atol=1e-5)


def test_ignores_side_fields():
  """Only the item field is used: changing the other fields changes nothing."""
  model = make_model()
  inputs = make_inputs()
  variables = init(model, inputs)
  base, _ = model.apply(variables, inputs, train=False)
  changed = inputs.copy()
  rng = np.random.default_rng(1)
  for f, v in enumerate(VOCAB[1:], start=1):
    changed[..., f] = rng.integers(0, v, changed.shape[:2])
  hidden, _ = model.apply(variables, changed, train=False)
  np.testing.assert_array_equal(hidden, base)


@pytest.mark.parametrize('pre_norm', [True, False])
def test_pre_and_post_norm_finite(pre_norm):
  """Both LayerNorm placements run in eval and train mode with finite outputs."""
  model = make_model(pre_norm=pre_norm)
  inputs = make_inputs()
  variables = init(model, inputs)
  assert ('final_norm' in variables['params']) == pre_norm
  for train in (False, True):
    hidden, _ = model.apply(variables, inputs, train=train,
                            rngs={'dropout': jax.random.key(1)})
    assert hidden.shape == (BATCH, MAX_LEN, 16)
    assert np.isfinite(hidden).all()


def test_two_heads():
  """num_heads=2 with hidden divisible by 2 runs and gives finite outputs."""
  model = make_model(num_heads=2)
  inputs = make_inputs()
  hidden, _ = model.apply(init(model, inputs), inputs, train=False)
  assert hidden.shape == (BATCH, MAX_LEN, 16)
  assert np.isfinite(hidden).all()


def test_dropout_keys():
  """In training, the same dropout key gives the same output and another key another one."""
  model = make_model()
  inputs = make_inputs()
  assert_dropout_is_keyed(model, init(model, inputs), inputs)
