"""Tests of `pmix_jax.data.batches` on a tiny log where item id == behavior row.

Users (in order) have 7, 4, 2 and 5 behaviors and every behavior is a distinct item, given in
time order, so `behaviors[r, 0] == r` and every gathered value names its row:

  user 0: rows 1..7   training 1..5, valid 6, test 7
  user 1: rows 8..11  training 8..9, valid 10, test 11
  user 2: rows 12..13 train-only (fewer than 3 behaviors)
  user 3: rows 14..18 training 14..16, valid 17, test 18
"""

import numpy as np
import pytest

from pmix_jax.data import batches
from pmix_jax.data.sequences import InteractionLog, build_sequences

MAX_LEN = 3
LENGTHS = (7, 4, 2, 5)
TRAIN_TARGETS = [2, 3, 4, 5, 9, 13, 15, 16]  # Training behaviors except each user's first.
HELD_OUT = {6, 7, 10, 11, 17, 18}  # Validation and test behaviors.


@pytest.fixture(name='data')
def fixture_data():
  user = np.repeat(np.arange(1, len(LENGTHS) + 1), LENGTHS)
  item = np.arange(1, len(user) + 1)
  log = InteractionLog(user=user, item=item, timestamp=np.arange(len(user)),
                       fields=dict(action=np.ones(len(user), np.int64)), source='hand-written')
  data = build_sequences(log, ('action',))
  np.testing.assert_array_equal(data.behaviors[:, 0], np.arange(len(user) + 1))
  return data


def test_prefix_rows_one_per_training_target(data):
  """Each training behavior but the user's first is the target of exactly one prefix row."""
  rows = batches.prefix_rows(data)
  np.testing.assert_array_equal(rows.end, TRAIN_TARGETS)
  np.testing.assert_array_equal(rows.start, [1, 1, 1, 1, 8, 12, 14, 14])
  np.testing.assert_array_equal(
      batches.gather_targets(data, rows, MAX_LEN, sequence=False), TRAIN_TARGETS)


def test_gather_inputs_left_pads_within_user(data):
  """Inputs are the last max_len behaviors of [start, end), left-padded, never another user's."""
  rows = batches.prefix_rows(data)
  inputs = batches.gather_inputs(data, rows, MAX_LEN)
  assert inputs.shape == (8, MAX_LEN, 2)
  expected = [
      [0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4],  # User 0.
      [0, 0, 8],  # User 1: rows 6, 7 belong to user 0.
      [0, 0, 12],  # User 2: rows 10, 11 belong to user 1.
      [0, 0, 14], [0, 14, 15],  # User 3.
  ]
  np.testing.assert_array_equal(inputs[:, :, 0], expected)
  # The action field is gathered alongside and padded the same way.
  np.testing.assert_array_equal(inputs[:, :, 1], np.array(expected) > 0)


def test_gather_targets_sequence_mode(data):
  """In sequence mode each real input position targets the next behavior; padding gets 0."""
  rows = batches.prefix_rows(data)
  targets = batches.gather_targets(data, rows, MAX_LEN, sequence=True)
  expected = [
      [0, 0, 2], [0, 2, 3], [2, 3, 4], [3, 4, 5],
      [0, 0, 9],
      [0, 0, 13],
      [0, 0, 15], [0, 15, 16],
  ]
  np.testing.assert_array_equal(targets, expected)


def test_window_rows_cover_each_training_target_once(data):
  """Windows tile the training sequences: every training target once, nothing held out."""
  rows = batches.window_rows(data, MAX_LEN, MAX_LEN)
  np.testing.assert_array_equal(rows.end, [5, 2, 9, 13, 16])
  inputs = batches.gather_inputs(data, rows, MAX_LEN)[:, :, 0]
  targets = batches.gather_targets(data, rows, MAX_LEN, sequence=True)
  np.testing.assert_array_equal(inputs, [[2, 3, 4], [0, 0, 1], [0, 0, 8], [0, 0, 12],
                                         [0, 14, 15]])
  np.testing.assert_array_equal(targets, [[3, 4, 5], [0, 0, 2], [0, 0, 9], [0, 0, 13],
                                          [0, 15, 16]])
  pairs = [(r, p) for r, p in zip(*np.nonzero(targets))]
  assert sorted(targets[r, p] for r, p in pairs) == TRAIN_TARGETS
  # Every real input is followed by its target; padding inputs have none.
  np.testing.assert_array_equal(inputs > 0, targets > 0)
  assert not HELD_OUT & set(inputs.ravel().tolist())
  assert not HELD_OUT & set(targets.ravel().tolist())


def test_window_rows_with_long_max_len(data):
  """With max_len longer than any sequence there is one window per user with targets."""
  rows = batches.window_rows(data, 10, 10)
  np.testing.assert_array_equal(rows.start, [1, 8, 12, 14])
  np.testing.assert_array_equal(rows.end, [5, 9, 13, 16])


def test_overlapping_windows_count_each_target_once_with_context(data):
  """stride 1 < max_len: a window per target, each predicting only its latest position."""
  rows = batches.window_rows(data, MAX_LEN, 1)
  inputs = batches.gather_inputs(data, rows, MAX_LEN)[:, :, 0]
  targets = batches.gather_targets(data, rows, MAX_LEN, sequence=True)
  assert sorted(targets[targets > 0].tolist()) == TRAIN_TARGETS
  # Only the user's earliest window may predict before its last position; every other
  # target is predicted from the full context a prefix row would have.
  prefix = batches.prefix_rows(data)
  prefix_inputs = batches.gather_inputs(data, prefix, MAX_LEN)[:, :, 0]
  prefix_targets = batches.gather_targets(data, prefix, MAX_LEN, sequence=False)
  for row, target in zip(inputs, targets):
    last = target[-1]
    assert last > 0 and (target[:-1] == 0).all() or row[0] == 0
    match = np.flatnonzero(prefix_targets == last)
    np.testing.assert_array_equal(prefix_inputs[match[0]], row)


def test_eval_rows_valid(data):
  """Validation rows: input is the training sequence, target the validation behavior."""
  rows = batches.eval_rows(data, 'valid')
  np.testing.assert_array_equal(rows.start, [1, 8, 14])
  np.testing.assert_array_equal(batches.gather_targets(data, rows, MAX_LEN, False), [6, 10, 17])
  np.testing.assert_array_equal(batches.gather_inputs(data, rows, MAX_LEN)[:, :, 0],
                                [[3, 4, 5], [0, 8, 9], [14, 15, 16]])


def test_eval_rows_test_input_includes_validation_item(data):
  """Test rows: input ends with the validation behavior, target is the test behavior."""
  rows = batches.eval_rows(data, 'test')
  np.testing.assert_array_equal(batches.gather_targets(data, rows, MAX_LEN, False), [7, 11, 18])
  np.testing.assert_array_equal(batches.gather_inputs(data, rows, MAX_LEN)[:, :, 0],
                                [[4, 5, 6], [8, 9, 10], [15, 16, 17]])


def test_gather_history(data):
  """History is every item of [start, end), right-padded with 0 to the longest row."""
  rows = batches.eval_rows(data, 'valid')
  np.testing.assert_array_equal(batches.gather_history(data, rows),
                                [[1, 2, 3, 4, 5], [8, 9, 0, 0, 0], [14, 15, 16, 0, 0]])
  test_history = batches.gather_history(data, batches.eval_rows(data, 'test'))
  np.testing.assert_array_equal(test_history[1], [8, 9, 10, 0, 0, 0])


def test_pad_rows(data):
  """Padding appends empty rows (no input, target 0) up to a multiple; none if already one."""
  rows = batches.eval_rows(data, 'valid')
  padded = batches.pad_rows(rows, 2)
  np.testing.assert_array_equal(padded.start, [1, 8, 14, 0])
  np.testing.assert_array_equal(padded.end, [6, 10, 17, 0])
  np.testing.assert_array_equal(batches.gather_inputs(data, padded, MAX_LEN)[3], 0)
  assert batches.gather_targets(data, padded, MAX_LEN, False)[3] == 0
  np.testing.assert_array_equal(batches.gather_targets(data, padded, MAX_LEN, True)[3], 0)
  same = batches.pad_rows(rows, 3)
  np.testing.assert_array_equal(same.start, rows.start)
  np.testing.assert_array_equal(same.end, rows.end)


def make_train_batches(data, seed=0, sequence_targets=False):
  return batches.TrainBatches(data=data, rows=batches.prefix_rows(data), max_len=MAX_LEN,
                              batch_size=3, sequence_targets=sequence_targets, seed=seed)


def test_train_batches_deterministic_per_seed_and_epoch(data):
  """The same (seed, epoch) gives the same batches; another epoch another order."""
  train = make_train_batches(data)
  first = [b['targets'] for b in train.epoch(0)]
  again = [b['targets'] for b in make_train_batches(data).epoch(0)]
  other = [b['targets'] for b in train.epoch(1)]
  np.testing.assert_array_equal(np.concatenate(first), np.concatenate(again))
  assert not np.array_equal(np.concatenate(first), np.concatenate(other))


def test_train_batches_resume_from_step(data):
  """`epoch(e, first_step=k)` yields exactly the batches of `epoch(e)` from step k on."""
  train = make_train_batches(data)
  full = list(train.epoch(2))
  tail = list(train.epoch(2, first_step=1))
  assert len(tail) == len(full) - 1
  for a, b in zip(full[1:], tail):
    np.testing.assert_array_equal(a['inputs'], b['inputs'])
    np.testing.assert_array_equal(a['targets'], b['targets'])
  assert not list(train.epoch(2, first_step=train.steps_per_epoch))


def test_train_batches_cover_every_row_once_and_pad_last(data):
  """Each epoch has every row once; the last batch is padded with target-0 rows, not dropped."""
  train = make_train_batches(data)
  assert train.steps_per_epoch == 3  # 8 rows, batch 3.
  for epoch in range(3):
    out = list(train.epoch(epoch))
    assert len(out) == 3
    for b in out:
      assert b['inputs'].shape == (3, MAX_LEN, 2)
      assert b['targets'].shape == (3,)
    targets = np.concatenate([b['targets'] for b in out])
    # Targets equal row ends, which are distinct: they identify the rows.
    assert sorted(targets[targets > 0].tolist()) == TRAIN_TARGETS
    np.testing.assert_array_equal(out[-1]['targets'][2], 0)
    np.testing.assert_array_equal(out[-1]['inputs'][2], 0)
    # Inputs of each row end with the behavior right before its target.
    real = targets > 0
    last_inputs = np.concatenate([b['inputs'][:, -1, 0] for b in out])
    np.testing.assert_array_equal(last_inputs[real], targets[real] - 1)


def test_train_batches_sequence_targets(data):
  """With sequence targets every batch has [batch, max_len] targets, last column the row's."""
  train = make_train_batches(data, sequence_targets=True)
  out = list(train.epoch(0))
  for b in out:
    assert b['targets'].shape == (3, MAX_LEN)
    np.testing.assert_array_equal(b['targets'] > 0, b['inputs'][:, :, 0] > 0)
  last = np.concatenate([b['targets'][:, -1] for b in out])
  assert sorted(last[last > 0].tolist()) == TRAIN_TARGETS


@pytest.mark.parametrize('sequence_targets', [False, True])
def test_length_buckets_cut_only_columns_of_padding(data, sequence_targets):
  """A batch is cut to the smallest bucket at or above its longest input (max_len if none):
  the columns dropped are padding in every row, the rest equal the full-width batch's."""
  full = batches.TrainBatches(data, batches.prefix_rows(data), MAX_LEN, 2, sequence_targets,
                              seed=0)
  cut = batches.TrainBatches(data, batches.prefix_rows(data), MAX_LEN, 2, sequence_targets,
                             seed=0, length_buckets=(1, 2))
  widths = []
  for a, b in zip(full.epoch(0), cut.epoch(0)):
    longest = int((a['inputs'][..., 0] > 0).sum(1).max())
    width = b['inputs'].shape[1]
    assert width == (longest if longest <= 2 else MAX_LEN)
    np.testing.assert_array_equal(a['inputs'][:, :MAX_LEN - width], 0)
    np.testing.assert_array_equal(a['inputs'][:, MAX_LEN - width:], b['inputs'])
    if sequence_targets:
      np.testing.assert_array_equal(a['targets'][:, :MAX_LEN - width], 0)
      np.testing.assert_array_equal(a['targets'][:, MAX_LEN - width:], b['targets'])
    else:
      np.testing.assert_array_equal(a['targets'], b['targets'])
    widths.append(width)
  assert len(set(widths)) > 1  # The case is not vacuous.


def test_group_by_length_batches_alike_rows_and_still_covers_and_resumes(data):
  """With `group_by_length`, rows of a pool are batched by length: every row once per epoch,
  the same batches for the same (seed, epoch), resumable from any step, and batches more
  alike in length than plain shuffling makes them."""
  def spread(train_batches, epochs=20):
    ranges = []
    for epoch in range(epochs):
      for index in train_batches.batch_rows(epoch):
        lengths = batches.row_lengths(train_batches.rows.take(index[index >= 0]), 100)
        ranges.append(lengths.max() - lengths.min())
    return np.mean(ranges)

  make = lambda group: batches.TrainBatches(data, batches.prefix_rows(data), 100, 2, False,
                                            seed=0, group_by_length=group)
  grouped = make(4)
  for epoch in range(3):
    index = grouped.batch_rows(epoch)
    assert sorted(index[index >= 0].tolist()) == list(range(len(grouped.rows)))
    np.testing.assert_array_equal(index, make(4).batch_rows(epoch))
    full, tail = list(grouped.epoch(epoch)), list(grouped.epoch(epoch, first_step=2))
    for a, b in zip(full[2:], tail):
      np.testing.assert_array_equal(a['inputs'], b['inputs'])
  assert spread(grouped) < spread(make(0))
