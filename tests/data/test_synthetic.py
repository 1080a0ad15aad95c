"""Tests of `pmix_jax.data.synthetic`: determinism, field values and sequential structure."""

import numpy as np
import pytest

from pmix_jax.data import synthetic
from pmix_jax.data.sequences import build_sequences

SMALL = dict(num_users=200, num_items=60, num_categories=4, mean_length=20)


def generate(seed=0):
  return synthetic.generate(seed=seed, **SMALL)


def as_arrays(log):
  return dict(user=log.user, item=log.item, timestamp=log.timestamp, **log.fields)


def test_same_seed_same_log():
  """Two logs from one seed are identical, array by array."""
  a, b = as_arrays(generate(0)), as_arrays(generate(0))
  assert a.keys() == b.keys()
  for name in a:
    np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_different_seed_differs():
  """Another seed gives another log."""
  a, b = generate(0), generate(1)
  assert len(a.item) != len(b.item) or not np.array_equal(a.item, b.item)


def test_fields_and_value_ranges():
  """The log has action, category, hour, weekday, all >= 1 and within their ranges."""
  log = generate()
  assert set(log.fields) == {'action', 'category', 'hour', 'weekday'}
  for name, column in log.fields.items():
    assert column.min() >= 1, name
    assert len(column) == len(log.user), name
  assert log.fields['action'].max() <= 5
  assert log.fields['category'].max() <= SMALL['num_categories']
  assert log.fields['hour'].max() <= 24
  assert log.fields['weekday'].max() <= 7
  assert log.item.min() >= 1 and log.item.max() <= SMALL['num_items']
  assert len(np.unique(log.user)) == SMALL['num_users']
  # Every user has at least 5 behaviors, so all are evaluated.
  assert np.bincount(log.user).min() >= 5


def test_builds_sequences_with_all_fields():
  """The log feeds `build_sequences` with every field it provides."""
  data = build_sequences(generate(), ('action', 'category', 'hour', 'weekday'))
  assert data.num_users == SMALL['num_users']
  assert data.vocab_sizes[1] <= 6 and data.vocab_sizes[2] <= SMALL['num_categories'] + 1
  assert data.stats()['users_train_only'] == 0


def mean_top_successor_share(user, item, min_count=5):
  """Average over items of the share of the most frequent next item within a user."""
  same_user = user[1:] == user[:-1]
  current, following = item[:-1][same_user], item[1:][same_user]
  shares = []
  for value in np.unique(current):
    nxt = following[current == value]
    if len(nxt) >= min_count:
      shares.append(np.bincount(nxt).max() / len(nxt))
  return float(np.mean(shares))


def test_item_to_item_transitions_exist():
  """Each item's most frequent successor dominates; shuffling each user's sequence breaks it."""
  data = build_sequences(generate(), ())
  user = np.repeat(np.arange(data.num_users), data.user_length)
  item = data.behaviors[1:, 0]
  ordered = mean_top_successor_share(user, item)
  rng = np.random.default_rng(0)
  shuffled_item = item.copy()
  for start, length in zip(data.user_start - 1, data.user_length):
    shuffled_item[start:start + length] = rng.permutation(item[start:start + length])
  shuffled = mean_top_successor_share(user, shuffled_item)
  assert ordered > 0.3
  assert shuffled < 0.2
  assert ordered > 2 * shuffled


def test_rejects_too_few_categories():
  """Invalid sizes raise a ValueError."""
  with pytest.raises(ValueError, match='num_categories'):
    synthetic.generate(num_users=10, num_items=10, num_categories=1, mean_length=10, seed=0)
