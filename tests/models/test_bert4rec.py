"""Tests of BERT4Rec: shapes, the [mask] token, cloze masking, the masked loss, training."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import configs.bert4rec
import pmix_jax.models.bert4rec  # noqa: F401  (registers 'bert4rec')
from pmix_jax import models, train
from pmix_jax.errors import ConfigError
from pmix_jax.models.bert4rec import BERT4Rec, mask_items
from tests.conftest import tiny_config
from tests.models.common import (BATCH, MAX_LEN, PADS, VOCAB, assert_beats_popularity,
                                 inputs_maker, model_builder, numpy_fan_in_init)

HIDDEN = 16
MASK = VOCAB[0]
make_model = model_builder(configs.bert4rec, VOCAB, MAX_LEN, hidden=HIDDEN)
make_inputs = inputs_maker(VOCAB, MAX_LEN, PADS, dtype=np.int32)


@functools.cache
def init_variables():
  """Parameters for every model of these tests (their shapes do not depend on dropout or
  mask_prob)."""
  return numpy_fan_in_init(make_model(), make_inputs())


@functools.cache
def jitted(method):
  """Jitted `(variables, x) -> outputs` of the default model: `__call__` or `encode`."""
  model = make_model()
  if method == 'encode':
    return jax.jit(lambda params, items: model.apply(params, items, train=False,
                                                     last_only=False, method='encode'))
  return jax.jit(lambda params, inputs: model.apply(params, inputs, train=False))


def other_item(item):
  return item % (VOCAB[0] - 1) + 1


def test_registry_and_config():
  """'bert4rec' is BERT4Rec, not causal; its config trains on windows with NOTES defaults."""
  assert models.MODELS['bert4rec'] is BERT4Rec
  assert BERT4Rec.causal is False
  config = configs.bert4rec.get_config()
  assert config.train.targets == 'seq2seq'
  assert (config.model.num_layers, config.model.num_heads, config.model.hidden,
          config.model.mask_prob) == (2, 2, 64, 0.2)


def test_shapes_and_the_mask_token_is_no_candidate():
  """hidden is [B, 1, D]; the embedding has one more row ([mask]) than the item table."""
  inputs = make_inputs()
  variables = init_variables()
  hidden, table = jitted('call')(variables, inputs)
  assert hidden.shape == (BATCH, 1, HIDDEN)
  embedding = variables['params']['item_embed']['embedding']
  assert embedding.shape == (VOCAB[0] + 1, HIDDEN)
  assert table.shape == (VOCAB[0], HIDDEN)  # Scores cover items 0..V-1 only.
  np.testing.assert_array_equal(table, embedding[:VOCAB[0]])


def test_inference_drops_the_oldest_behavior_and_reads_an_appended_mask():
  """`__call__` equals the encoder's last state on `items[:, 1:] + [mask]`: the oldest
  behavior and the side fields are ignored, the latest and middle items are not."""
  inputs = make_inputs()
  variables = init_variables()
  base, _ = jitted('call')(variables, inputs)
  items = np.concatenate([inputs[:, 1:, 0], np.full((BATCH, 1), MASK, np.int32)], axis=1)
  direct, _ = jitted('encode')(variables, items)
  np.testing.assert_allclose(base[:, 0], direct[:, -1], atol=1e-6)

  changed = inputs.copy()
  changed[0, 0, 0] = other_item(changed[0, 0, 0])  # Row 0 has no padding: its oldest item.
  changed[..., 1:] = 1  # Side fields.
  hidden, _ = jitted('call')(variables, changed)
  np.testing.assert_array_equal(hidden, base)
  for position in (MAX_LEN - 1, 5):  # The latest behavior; one in the middle.
    changed = inputs.copy()
    changed[:, position, 0] = other_item(changed[:, position, 0])
    hidden, _ = jitted('call')(variables, changed)
    assert not np.allclose(hidden, base, atol=1e-5), position


def test_encoder_is_bidirectional_and_ignores_padding():
  """An earlier position's state depends on later items, and a row's states do not depend
  on how much padding precedes it (positions are aligned to the latest behavior)."""
  inputs = make_inputs()  # Row 2 has 7 padding positions and 5 items.
  variables = init_variables()
  items = inputs[..., 0]
  encode = lambda x: jitted('encode')(variables, x)[0]
  base = encode(items)
  later = items.copy()
  later[:, -1] = MASK
  assert not np.allclose(encode(later)[:, -3], base[:, -3], atol=1e-5)
  np.testing.assert_allclose(encode(items[:, -6:])[2, -5:], base[2, -5:], atol=1e-5)
  assert not np.allclose(encode(items[:, -6:])[0, -5:], base[0, -5:], atol=1e-5)


def test_mask_items_rate_padding_and_labels():
  """On a big random batch, real items are masked at `mask_prob` (within 4 sigma),
  padding never; labels hold the hidden item at masked positions, 0 elsewhere."""
  rng = np.random.default_rng(0)
  rows, length = 512, 50
  sequence = rng.integers(1, 100, (rows, length)).astype(np.int32)
  lengths = rng.integers(0, length + 1, rows)
  sequence[np.arange(length) < (length - lengths)[:, None]] = 0  # Left padding.
  real = sequence > 0
  draw = jax.jit(mask_items, static_argnums=3)  # One compilation for both rates.
  for i, mask_prob in enumerate((0.2, 0.5)):
    masked, labels = map(np.asarray, draw(jax.random.key(i), sequence, mask_prob, 100))
    is_masked = masked == 100
    np.testing.assert_array_equal(is_masked, labels > 0)
    np.testing.assert_array_equal(labels[is_masked], sequence[is_masked])
    np.testing.assert_array_equal(masked[~is_masked], sequence[~is_masked])
    assert not (is_masked & ~real).any()
    rate = is_masked.sum() / real.sum()
    sigma = np.sqrt(mask_prob * (1 - mask_prob) / real.sum())
    assert abs(rate - mask_prob) < 4 * sigma + 1e-3, (rate, mask_prob)
    # Every row with an item has a mask; empty rows have none.
    np.testing.assert_array_equal(is_masked.any(axis=1), lengths > 0)


def test_a_row_without_a_draw_masks_its_latest_item():
  """With a tiny mask_prob, each non-empty row has exactly its latest item masked."""
  sequence = jnp.asarray([[0, 0, 4, 5, 6], [1, 2, 3, 4, 9], [0, 0, 0, 0, 0],
                          [0, 0, 0, 0, 7]], jnp.int32)
  masked, labels = mask_items(jax.random.key(0), sequence, 1e-9, 50)
  np.testing.assert_array_equal(masked, [[0, 0, 4, 5, 50], [1, 2, 3, 4, 50], [0] * 5,
                                         [0, 0, 0, 0, 50]])
  np.testing.assert_array_equal(labels, [[0, 0, 0, 0, 6], [0, 0, 0, 0, 9], [0] * 5,
                                         [0, 0, 0, 0, 7]])


def batches():
  """The same rows as a prefix batch (targets [B]) and a seq2seq batch (targets [B, L])."""
  inputs = make_inputs(seed=3)
  nxt = np.array([7, 8, 9], np.int32)
  sequence = np.concatenate([inputs[:, 1:, 0], nxt[:, None]], axis=1)  # Left-padded too.
  return (dict(inputs=inputs, targets=nxt), dict(inputs=inputs, targets=sequence)), sequence


@pytest.mark.parametrize('kind', [0, 1], ids=['prefix', 'seq2seq'])
def test_training_sequence_from_prefix_and_seq2seq_batches(kind):
  """Unmasking `masked_sequence` gives `concat(inputs[:, 1:, 0], latest target)`."""
  model = make_model(mask_prob=0.5)
  pair, sequence = batches()
  masked, labels = model.apply({}, pair[kind], method='masked_sequence',
                               rngs={'negatives': jax.random.key(4)})
  assert (np.asarray(masked) == MASK).any()
  np.testing.assert_array_equal(np.where(labels > 0, labels, masked), sequence)


@pytest.mark.parametrize('kind', [0, 1], ids=['prefix', 'seq2seq'])
def test_a_batch_narrower_than_max_len_keeps_its_oldest_item(kind):
  """A batch cut to its longest row (`length_buckets`) trains on the items a max_len-wide one
  would: its sequence is the full-width one without the columns of padding."""
  model = make_model(mask_prob=0.5)
  pair, _ = batches()
  batch = {name: value[1:] for name, value in pair[kind].items()}  # Row 0 fills max_len.
  width = int((batch['inputs'][..., 0] > 0).sum(1).max())
  assert width < MAX_LEN  # The longest row fills the cut batch.
  cut = {name: value[:, -width:] if value.ndim > 1 else value for name, value in batch.items()}
  rngs = {'negatives': jax.random.key(4)}
  full = [np.asarray(a) for a in model.apply({}, batch, method='masked_sequence', rngs=rngs)]
  narrow = [np.asarray(a) for a in model.apply({}, cut, method='masked_sequence', rngs=rngs)]
  unmask = lambda masked, labels: np.where(labels > 0, labels, masked)
  assert narrow[0].shape[1] == width + 1
  np.testing.assert_array_equal(unmask(*full)[:, :-width - 1], 0)
  np.testing.assert_array_equal(unmask(*full)[:, -width - 1:], unmask(*narrow))


@pytest.mark.parametrize('kind', [0, 1], ids=['prefix', 'seq2seq'])
def test_loss_is_taken_at_masked_positions_only(kind):
  """training_loss equals the softmax cross-entropy averaged over the masked positions
  (recomputed in numpy from the same RNG), not over every position."""
  model = make_model(dropout=0.0, mask_prob=0.3)
  pair, _ = batches()
  batch = pair[kind]
  variables = init_variables()
  rngs = {'negatives': jax.random.key(5), 'dropout': jax.random.key(6)}
  value = model.apply(variables, batch, loss='softmax', num_negatives=1, rngs=rngs,
                      method='training_loss')
  masked, labels = model.apply(variables, batch, rngs=rngs, method='masked_sequence')
  hidden, table = model.apply(variables, masked, train=False, last_only=False,
                              method='encode')
  logits = np.asarray(hidden, np.float64) @ np.asarray(table, np.float64).T
  logits[..., 0] = -np.inf  # Padding is no class.
  log_probs = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(
      -1, keepdims=True)) - logits.max(-1, keepdims=True)
  labels = np.asarray(labels)
  nll = -np.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
  at_masks = labels > 0
  assert 0 < at_masks.sum() < (np.asarray(masked) > 0).sum()
  np.testing.assert_allclose(value, nll[at_masks].mean(), rtol=1e-4)
  # All real positions (each predicting its own item) would give another value.
  sequence = np.where(at_masks, labels, masked)
  everywhere = -np.take_along_axis(log_probs, sequence[..., None], axis=-1)[..., 0]
  assert not np.isclose(value, everywhere[sequence > 0].mean(), rtol=1e-3)


@pytest.mark.parametrize('overrides', [dict(mask_prob=0.0), dict(mask_prob=1.5),
                                       dict(num_heads=3), dict(ffn_multiplier=0)])
def test_bad_config_is_a_config_error(overrides):
  model = make_model(**overrides)
  with pytest.raises(ConfigError):
    model.init({'params': jax.random.key(0)}, make_inputs(), train=False)


def test_beats_popularity_on_synthetic_data(tmp_path):
  """Trained by the loop on seq2seq windows, it ranks far above the most-popular items."""
  results = train.train_and_evaluate(tiny_config('bert4rec', train__num_epochs=15),
                                     str(tmp_path))
  assert_beats_popularity(results)
