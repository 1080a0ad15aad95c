"""Tests of `pmix_jax.data.sequences` on a tiny hand-written log."""

import numpy as np
import pytest

from pmix_jax.data.sequences import InteractionLog, build_sequences, time_fields
from pmix_jax.errors import DataError

# (user, item, timestamp, action), deliberately unsorted, with non-contiguous raw ids and
# timestamp ties: user 10 has (104, 103) both at t=30, user 20 has (101, 100) both at t=40,
# each tie listed in the opposite of item-id order so that sorting by item would show.
ROWS = [
    (20, 105, 50, 1),
    (10, 104, 30, 2),
    (10, 100, 10, 3),
    (30, 102, 5, 4),
    (10, 103, 30, 5),
    (20, 101, 40, 1),
    (10, 102, 20, 2),
    (20, 103, 60, 3),
    (30, 105, 1, 4),
    (20, 100, 40, 5),
]


def make_log(rows=ROWS, **extra_fields):
  user, item, timestamp, action = (np.array(c, np.int64) for c in zip(*rows))
  return InteractionLog(user=user, item=item, timestamp=timestamp,
                        fields=dict(action=action, **extra_fields), source='hand-written')


def test_ids_are_remapped_with_zero_as_padding():
  """Items 1..N follow sorted raw ids, users are sorted raw ids, index 0 is padding."""
  data = build_sequences(make_log(), ('action',))
  np.testing.assert_array_equal(data.item_ids, [100, 101, 102, 103, 104, 105])
  np.testing.assert_array_equal(data.user_ids, [10, 20, 30])
  assert data.num_items == 6
  assert data.num_users == 3
  assert data.vocab_sizes == (7, 6)  # 6 items + padding; actions 1..5 + padding.
  assert data.field_names == ('item', 'action')
  np.testing.assert_array_equal(data.behaviors[0], [0, 0])


def test_behaviors_layout_and_stable_time_order():
  """Users are contiguous blocks in time order; equal timestamps keep the log order."""
  data = build_sequences(make_log(), ('action',))
  np.testing.assert_array_equal(data.user_start, [1, 5, 9])
  np.testing.assert_array_equal(data.user_length, [4, 4, 2])
  expected = [
      [0, 0],
      # User 10: raw items 100 (t=10), 102 (t=20), 104 then 103 (both t=30, log order).
      [1, 3], [3, 2], [5, 2], [4, 5],
      # User 20: raw items 101 then 100 (both t=40, log order), 105 (t=50), 103 (t=60).
      [2, 1], [1, 5], [6, 1], [4, 3],
      # User 30: raw items 105 (t=1), 102 (t=5).
      [6, 4], [3, 4],
  ]
  np.testing.assert_array_equal(data.behaviors, expected)
  assert data.behaviors.dtype == np.int32
  assert data.behaviors.shape == (len(ROWS) + 1, 2)


def test_train_end_and_train_only_users():
  """Users with >= 3 behaviors hold out the last two; a user with 2 is train-only."""
  data = build_sequences(make_log(), ('action',))
  np.testing.assert_array_equal(data.stage, [0, 0, 0, 1, 2, 0, 0, 1, 2, 0, 0])
  np.testing.assert_array_equal(data.targets('valid'), [3, 7])
  np.testing.assert_array_equal(data.targets('test'), [4, 8])
  # User 10: rows 1..4, training rows 1..2. User 20: rows 5..8, training 5..6.
  # User 30: rows 9..10, all training.
  np.testing.assert_array_equal(data.train_end, [3, 7, 11])
  stats = data.stats()
  assert stats['users'] == 3
  assert stats['items'] == 6
  assert stats['interactions'] == 10
  assert stats['users_train_only'] == 1
  assert stats['length_max'] == 4
  assert stats['density'] == pytest.approx(10 / 18)
  # Training items 100, 101, 102, 105: validation 104 is cold and 105 not; test 103 twice.
  assert stats['valid_cold_targets'] == 0.5 and stats['test_cold_targets'] == 1.0


def test_no_feature_fields():
  """Requesting no features gives item-only behaviors."""
  data = build_sequences(make_log(), ())
  assert data.field_names == ('item',)
  assert data.vocab_sizes == (7,)
  np.testing.assert_array_equal(data.behaviors[1:5, 0], [1, 3, 5, 4])


def test_missing_feature_field_is_named():
  """A requested feature absent from the log raises a DataError naming it."""
  with pytest.raises(DataError, match='genre') as info:
    build_sequences(make_log(), ('action', 'genre'))
  assert 'hand-written' in str(info.value)


def test_feature_value_zero_is_rejected():
  """A feature value 0 (the padding value) raises a DataError naming the field."""
  bad = np.ones(len(ROWS), np.int64)
  bad[3] = 0
  with pytest.raises(DataError, match='mood'):
    make_log(mood=bad)


def test_mismatched_column_length_is_rejected():
  """A field with the wrong number of rows raises a DataError naming it."""
  with pytest.raises(DataError, match='mood'):
    make_log(mood=np.ones(len(ROWS) - 1, np.int64))


def test_empty_log_is_rejected():
  """A log without interactions cannot become sequences (filters may empty a log first)."""
  empty = np.zeros(0, np.int64)
  log = InteractionLog(user=empty, item=empty, timestamp=empty, fields={}, source='empty')
  with pytest.raises(DataError, match='empty: no interactions'):
    build_sequences(log, ())


def test_time_fields_on_known_timestamps():
  """Hour is 1..24 and weekday 1..7 with Monday = 1, in UTC."""
  # 1970-01-01 00:00 was a Thursday; 1970-01-05 a Monday; 1970-01-04 a Sunday.
  timestamp = np.array([0, 3599, 3600, 23 * 3600 + 59, 4 * 86400, 3 * 86400 + 12 * 3600,
                        1_000_000_000])
  fields = time_fields(timestamp)
  # 1_000_000_000 s = 2001-09-09 01:46:40 UTC, a Sunday.
  np.testing.assert_array_equal(fields['hour'], [1, 1, 2, 24, 1, 13, 2])
  np.testing.assert_array_equal(fields['weekday'], [4, 4, 4, 4, 1, 7, 7])


def test_duplicated_rows_are_kept_and_counted():
  """A (user, item, timestamp) row given twice stays two behaviors and is counted."""
  log = InteractionLog(user=np.array([1, 1, 1, 2]), item=np.array([5, 5, 6, 5]),
                       timestamp=np.array([10, 10, 11, 10]), fields={}, source='dups')
  data = build_sequences(log, ())
  assert data.stats()['interactions'] == 4
  assert data.stats()['duplicate_rows'] == 1


def test_temporal_split_is_global_by_time():
  """70/10/20 of all records by time: a user's late records are targets whoever they are."""
  # 10 records; times 0..9 spread over two users. Train: times 0-6, valid: 7, test: 8, 9.
  log = InteractionLog(user=np.array([1, 2, 1, 2, 1, 2, 1, 2, 1, 1]),
                       item=np.arange(10) + 1, timestamp=np.arange(10), fields={},
                       source='clock')
  data = build_sequences(log, (), split='temporal')
  # User 1 (rows 1..6) has times 0, 2, 4, 6, 8, 9; user 2 (rows 7..10) has 1, 3, 5, 7.
  np.testing.assert_array_equal(data.stage[1:], [0, 0, 0, 0, 2, 2, 0, 0, 0, 1])
  np.testing.assert_array_equal(data.train_end, [5, 10])
  assert data.stats()['test_targets'] == 2 and data.stats()['valid_targets'] == 1


def test_per_user_temporal_split_by_position():
  """Each user's sequence 70/10/20 by position (10 behaviors: 7 train, 1 valid, 2 test)."""
  log = InteractionLog(user=np.ones(10, int), item=np.arange(10) + 1,
                       timestamp=np.arange(10), fields={}, source='order')
  data = build_sequences(log, (), split='per_user_temporal')
  np.testing.assert_array_equal(data.stage[1:], [0] * 7 + [1] + [2] * 2)


def test_user_field_is_derived_for_every_log():
  """`user` (for user-embedding models) is the user's index + 1 on each of its behaviors."""
  data = build_sequences(make_log(), ('user', 'action'))
  assert data.field_names == ('item', 'user', 'action') and data.vocab_sizes[1] == 4
  for index in range(data.num_users):
    start, length = data.user_start[index], data.user_length[index]
    assert (data.behaviors[start:start + length, 1] == index + 1).all()
