"""Tests of the Pyramid Mixer: shapes, ablation switches, period scaling and the mixers."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import configs.pyramid
from pmix_jax import models
from pmix_jax.errors import ConfigError
from pmix_jax.models.pyramid_mixer import MixerLayer, PeriodScaling, PyramidMixer
from tests.models.common import (BATCH, MAX_LEN, PADS, VOCAB, assert_dropout_is_keyed,
                                 flax_init, inputs_maker, model_builder, num_params)

HIDDEN = 8
FIELDS = len(VOCAB)
SIZES = dict(hidden=HIDDEN, behavior_rank=4, feature_rank=8)
make_model = model_builder(configs.pyramid, VOCAB, MAX_LEN, **SIZES)
make_inputs = inputs_maker(VOCAB, MAX_LEN, PADS)


def init(model, inputs=None):
  return flax_init(model, make_inputs() if inputs is None else inputs)


def flat_names(variables):
  return {'/'.join(str(getattr(k, 'key', k)) for k in path)
          for path, _ in jax.tree_util.tree_flatten_with_path(variables['params'])[0]}


# ------------------------------------------------------------------------ the whole model


def test_registry():
  """The registry maps 'pyramid_mixer' to PyramidMixer, which is not causal."""
  assert models.MODELS['pyramid_mixer'] is PyramidMixer
  assert PyramidMixer.causal is False


def test_shapes():
  """hidden is [B, 1, D] and the item table is the first V0 rows of the embeddings."""
  model = make_model()
  inputs = make_inputs()
  variables = init(model, inputs)
  hidden, table = model.apply(variables, inputs, train=False)
  assert hidden.shape == (BATCH, 1, HIDDEN)
  assert table.shape == (VOCAB[0], HIDDEN)
  np.testing.assert_array_equal(table, variables['params']['embeddings'][:VOCAB[0]])
  assert np.isfinite(hidden).all()


ABLATIONS = {
    'full': {},
    **configs.pyramid.ABLATIONS,  # The paper's ablations, as named config variants.
    'three_levels': dict(kernel_sizes=(2, 3), strides=(2, 1)),
    'swish': dict(activation='swish'),
    'two_layers_per_level': dict(layers_per_level=2),
}


@pytest.mark.parametrize('name', sorted(ABLATIONS))
def test_ablations_run(name):
  """Every ablation gives finite [B, 1, D] outputs in eval and train mode."""
  model = make_model(**ABLATIONS[name])
  inputs = make_inputs()
  variables = init(model, inputs)
  for train in (False, True):
    hidden, table = model.apply(variables, inputs, train=train,
                                rngs={'dropout': jax.random.key(1)})
    assert hidden.shape == (BATCH, 1, HIDDEN)
    assert table.shape == (VOCAB[0], HIDDEN)
    assert np.isfinite(hidden).all()


def _param_names(variables) -> set[str]:
  return {'/'.join(k.key for k in path)
          for path, _ in jax.tree_util.tree_flatten_with_path(variables['params'])[0]}


def test_named_variants_remove_what_they_name():
  """Each named variant of configs/pyramid.py drops exactly its component's weights."""
  inputs = make_inputs()

  def names(variant):
    cfg = configs.pyramid.get_config(variant).model
    cfg.update(SIZES)
    return _param_names(init(models.build(cfg, vocab_sizes=VOCAB, max_len=MAX_LEN), inputs))

  full = names('')
  assert any('behavior_mixer' in n for n in full) and any('fusion_gate' in n for n in full)
  assert not any('behavior_mixer' in n for n in names('without_cross_behavior'))
  assert not any('feature_mixer' in n for n in names('without_cross_feature'))
  assert not any('fusion_gate' in n for n in names('without_cross_behavior'))
  assert not any('fusion_gate' in n for n in names('sum_fusion'))
  assert len(names('without_cross_period')) < len(full)
  with pytest.raises(ValueError, match='unknown Pyramid Mixer variant'):
    configs.pyramid.get_config('without_everything')


@pytest.mark.parametrize('overrides', [
    dict(cross_behavior=False, cross_feature=False),
    dict(kernel_sizes=(2, 2), strides=(2,)),
    dict(kernel_sizes=(), strides=(2,)),
    dict(fusion='concat'),
    dict(activation='relu'),
], ids=['no_mixer', 'more_kernels', 'more_strides', 'bad_fusion', 'bad_activation'])
def test_invalid_configs_raise(overrides):
  """Inconsistent or unknown settings raise ConfigError."""
  with pytest.raises(ConfigError):
    init(make_model(**overrides))


def test_low_rank_has_fewer_params():
  """low_rank=True has fewer parameters than the full-rank mixers."""
  assert num_params(init(make_model(low_rank=True))) < num_params(
      init(make_model(low_rank=False)))


def test_no_cross_feature_has_no_feature_mixer():
  """cross_feature=False creates no 'feature_mixer' (nor fusion gate) parameters."""
  names = flat_names(init(make_model(cross_feature=False)))
  assert not any('feature_mixer' in n for n in names)
  assert not any('fusion_gate' in n for n in names)
  assert any('behavior_mixer' in n for n in names)
  assert any('feature_mixer' in n for n in flat_names(init(make_model())))


def test_no_cross_behavior_has_no_behavior_mixer():
  """cross_behavior=False creates no 'behavior_mixer' parameters."""
  names = flat_names(init(make_model(cross_behavior=False)))
  assert not any('behavior_mixer' in n for n in names)
  assert any('feature_mixer' in n for n in names)


def test_single_level_has_no_period_scaling():
  """kernel_sizes=() gives one level and no 'period_scaling' parameters."""
  params = init(make_model(kernel_sizes=(), strides=()))['params']
  assert not any(k.startswith('period_scaling') for k in params)
  assert 'level_0_norm' in params and 'level_1_norm' not in params
  assert params['prediction']['kernel'].shape == (FIELDS * HIDDEN, HIDDEN)


def test_prediction_reads_every_level():
  """With two levels, both levels' states feed the prediction layer."""
  model = make_model(kernel_sizes=(2,), strides=(2,))
  inputs = make_inputs()
  variables = init(model, inputs)
  params = variables['params']
  assert 'level_0_norm' in params and 'level_1_norm' in params
  assert 'period_scaling_1' in params
  assert params['prediction']['kernel'].shape == (2 * FIELDS * HIDDEN, HIDDEN)
  base, _ = model.apply(variables, inputs, train=False)
  for level in (0, 1):
    norm = f'level_{level}_norm'
    zeroed = jax.tree_util.tree_map(jnp.zeros_like, params[norm])
    hidden, _ = model.apply({'params': {**params, norm: zeroed}}, inputs, train=False)
    assert not np.allclose(hidden, base), f'{norm} does not affect the prediction'


def test_deterministic_and_dropout_keys():
  """Same params and inputs give identical outputs; other dropout keys change training output."""
  model = make_model()
  inputs = make_inputs()
  variables = init(model, inputs)
  a, _ = model.apply(variables, inputs, train=False)
  b, _ = model.apply(variables, inputs, train=False)
  np.testing.assert_array_equal(a, b)
  assert_dropout_is_keyed(model, variables, inputs, keys=(3, 4))


def test_last_behavior_matters():
  """Changing the most recent behavior's item changes the user state."""
  model = make_model()
  inputs = make_inputs()
  variables = init(model, inputs)
  base, _ = model.apply(variables, inputs, train=False)
  changed = inputs.copy()
  changed[:, -1, 0] = changed[:, -1, 0] % (VOCAB[0] - 1) + 1
  hidden, _ = model.apply(variables, changed, train=False)
  for b in range(BATCH):
    assert not np.allclose(hidden[b], base[b], atol=1e-6)


# ------------------------------------------------------------------------ PeriodScaling


def period_scaling(x, kernel, stride, params=None):
  module = PeriodScaling(kernel, stride)
  if params is None:
    params = module.init(jax.random.key(0), x)
  return module.apply(params, x), params


@pytest.mark.parametrize('length, kernel, stride', [
    (12, 2, 2), (11, 2, 2), (12, 3, 2), (10, 3, 3), (7, 4, 3), (8, 3, 1), (5, 5, 2),
    (1, 2, 2), (2, 3, 2), (3, 4, 4),
])
def test_period_scaling_length(length, kernel, stride):
  """Output length is ceil((L - kernel) / stride) + 1, also for L < kernel and L % stride."""
  x = jax.random.normal(jax.random.key(1), (length, 2, FIELDS, 4))
  y, _ = period_scaling(x, kernel, stride)
  assert y.shape == (math.ceil((length - kernel) / stride) + 1, 2, FIELDS, 4)


@pytest.mark.parametrize('length, kernel, stride', [(1, 3, 1), (1, 3, 2), (2, 5, 2)])
def test_period_scaling_short_input_gives_one_position(length, kernel, stride):
  """A sequence much shorter than the kernel is padded to one window (length 1, not <= 0)."""
  x = jax.random.normal(jax.random.key(1), (length, 2, FIELDS, 4))
  y, _ = period_scaling(x, kernel, stride)
  assert y.shape == (1, 2, FIELDS, 4)


@pytest.mark.parametrize('length, kernel, stride', [
    (12, 2, 2), (11, 2, 2), (12, 3, 2), (10, 3, 3), (8, 3, 1), (9, 4, 3),
])
def test_period_scaling_aligned_to_latest(length, kernel, stride):
  """The last output window ends on the last input; earlier outputs do not see it."""
  x = jax.random.normal(jax.random.key(1), (length, 2, FIELDS, 4))
  y, params = period_scaling(x, kernel, stride)
  y2, _ = period_scaling(x.at[-1].add(1.0), kernel, stride, params)
  assert not np.allclose(y2[-1], y[-1])
  np.testing.assert_array_equal(y2[:-1], y[:-1])
  # The last window covers exactly the last `kernel` inputs: the one before does not count.
  y3, _ = period_scaling(x.at[-1 - kernel].add(1.0), kernel, stride, params)
  np.testing.assert_array_equal(y3[-1], y[-1])


def test_period_scaling_identity():
  """kernel = stride = 1 with kernel weight 1 and bias 0 is the identity."""
  x = jax.random.normal(jax.random.key(1), (7, 2, FIELDS, 4))
  params = {'params': {'kernel': jnp.ones((1, 1, FIELDS, 4)),
                       'bias': jnp.zeros((FIELDS, 4))}}
  y, _ = period_scaling(x, 1, 1, params)
  np.testing.assert_allclose(y, x, rtol=1e-6)


def test_period_scaling_is_a_windowed_sum():
  """Each output is the depthwise weighted sum of its window plus the bias."""
  length, kernel, stride = 7, 3, 2  # Padded by 0: windows [0:3], [2:5], [4:7].
  x = jax.random.normal(jax.random.key(1), (length, 2, FIELDS, 4))
  y, params = period_scaling(x, kernel, stride)
  w, bias = params['params']['kernel'], params['params']['bias']
  for j in range(y.shape[0]):
    window = x[j * stride:j * stride + kernel]
    expected = (window * w).sum(0) + bias
    np.testing.assert_allclose(y[j], expected, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------ MixerLayer


def mixer_layer(cross_behavior, cross_feature, fusion='gate'):
  return MixerLayer(behavior_hidden=lambda n: 4, feature_hidden=lambda n: 8,
                    activation='gelu', dropout=0.0, cross_behavior=cross_behavior,
                    cross_feature=cross_feature, fusion=fusion)


def perturbation_effect(layer, position=2):
  """Max change of every position's output when the input at `position` changes."""
  x = jax.random.normal(jax.random.key(0), (6, 2, FIELDS, 4))
  params = layer.init(jax.random.key(1), x, train=False)
  y = layer.apply(params, x, train=False)
  # A random change: a constant shift of a whole position would be undone by the LayerNorm.
  delta = jax.random.normal(jax.random.key(2), x.shape[1:])
  y2 = layer.apply(params, x.at[position].add(delta), train=False)
  assert y.shape == x.shape
  return np.abs(np.asarray(y2 - y)).reshape(6, -1).max(-1)


@pytest.mark.parametrize('cross_feature, fusion', [(False, 'gate'), (True, 'gate'),
                                                   (True, 'sum')])
def test_token_mixer_mixes_positions(cross_feature, fusion):
  """With the cross-behavior mixer, one position's change reaches every other position."""
  effect = perturbation_effect(mixer_layer(True, cross_feature, fusion))
  assert (effect > 1e-6).all()


def test_feature_mixer_keeps_positions_independent():
  """The cross-feature mixer alone leaves other positions' outputs exactly unchanged."""
  effect = perturbation_effect(mixer_layer(False, True))
  assert effect[2] > 1e-3
  np.testing.assert_array_equal(np.delete(effect, 2), 0.0)


def test_feature_mixer_mixes_fields():
  """The cross-feature mixer lets one field's change reach the other fields of a behavior."""
  layer = mixer_layer(False, True)
  x = jax.random.normal(jax.random.key(0), (6, 2, FIELDS, 4))
  params = layer.init(jax.random.key(1), x, train=False)
  y = layer.apply(params, x, train=False)
  y2 = layer.apply(params, x.at[:, :, 0].add(1.0), train=False)
  assert not np.allclose(y2[:, :, 1:], y[:, :, 1:])


def test_token_mixer_alone_keeps_fields_independent_per_channel():
  """The cross-behavior mixer alone mixes positions, not channels, past the shared norm."""
  layer = mixer_layer(True, False)
  x = jax.random.normal(jax.random.key(0), (6, 2, FIELDS, 4))
  params = layer.init(jax.random.key(1), x, train=False)
  y = layer.apply(params, x, train=False)
  # Changing one batch row leaves the other row untouched: the mixer acts per (b, c).
  y2 = layer.apply(params, x.at[:, 0].add(1.0), train=False)
  np.testing.assert_array_equal(y2[:, 1], y[:, 1])
