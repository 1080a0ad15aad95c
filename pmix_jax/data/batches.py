"""Left-padded batches as slices of precomputed numpy arrays.

A *row* is a window of one user's behaviors `[start, end)`, the last `max_len` of which are
the model input. Rows are built once; a batch is a gather from `SequenceData.behaviors`, so
the training loop does no per-example Python work.

Batches are `max_len` wide unless `length_buckets` is given: then each batch is cut to the
smallest bucket at or above its longest input, dropping only columns that are padding in
every row. On a dataset of short histories (Toys: 6 behaviors on average against a history
of 100) that saves most of the work of a model whose cost grows with the width, and each
width compiles once. `group_by_length` makes batches of alike lengths, so that the cut
bites even in large batches.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np

from pmix_jax.data.sequences import SequenceData


@dataclasses.dataclass(frozen=True)
class Rows:
  """Windows of users' behaviors in `SequenceData.behaviors`.

  `start`, `end`: `[N]`, the input is `[start, end)` (its last `max_len` behaviors).
  `first_target`: `[N]` or None; with sequence targets, only behaviors at or after this row
  are targets (so that overlapping windows count every target once).
  """
  start: np.ndarray
  end: np.ndarray
  first_target: np.ndarray | None = None

  def __len__(self) -> int:
    return len(self.start)

  def take(self, index: np.ndarray) -> Rows:
    return Rows(self.start[index], self.end[index],
                None if self.first_target is None else self.first_target[index])


def prefix_rows(data: SequenceData) -> Rows:
  """One row per training target: every proper prefix of each training sequence."""
  start, train_end = data.user_start, data.train_end
  num_targets = np.maximum(train_end - start - 1, 0)
  user = np.repeat(np.arange(data.num_users), num_targets)
  offset = np.arange(num_targets.sum()) - np.repeat(np.cumsum(num_targets) - num_targets,
                                                    num_targets)
  return Rows(start[user], start[user] + 1 + offset)


def window_rows(data: SequenceData, max_len: int, stride: int) -> Rows:
  """Windows of `max_len` inputs every `stride` behaviors, from each training sequence's end.

  Every training target (each training behavior but the first) is a target of exactly one
  window: the latest `stride` positions of a window are its targets (all positions of a
  user's earliest window), so with `stride < max_len` each target sees at least
  `max_len - stride` behaviors of context; `stride = max_len` tiles without overlap.
  """
  start, train_end = data.user_start, data.train_end
  num_targets = np.maximum(train_end - start - 1, 0)
  num_windows = -(-num_targets // stride)
  user = np.repeat(np.arange(data.num_users), num_windows)
  back = np.arange(num_windows.sum()) - np.repeat(np.cumsum(num_windows) - num_windows,
                                                  num_windows)
  end = train_end[user] - 1 - back * stride
  earliest = back == num_windows[user] - 1
  first_target = np.where(earliest, start[user] + 1, end - stride + 1)
  return Rows(start[user], end, first_target)


def eval_rows(data: SequenceData, split: str) -> Rows:
  """One row per 'valid' or 'test' target: its input is everything the user did before it."""
  targets = data.targets(split)
  return Rows(data.user_start[data.owner[targets - 1]], targets)


def gather_inputs(data: SequenceData, rows: Rows, max_len: int) -> np.ndarray:
  """`[N, max_len, F]` int32, left-padded with zeros."""
  index = rows.end[:, None] - max_len + np.arange(max_len)
  return data.behaviors[np.where(index >= rows.start[:, None], index, 0)]


def gather_targets(data: SequenceData, rows: Rows, max_len: int, sequence: bool) -> np.ndarray:
  """Item ids to predict: `[N, max_len]` after each input (0 = none) or `[N]` after the last."""
  if not sequence:
    return data.behaviors[rows.end, 0]
  index = rows.end[:, None] - max_len + np.arange(max_len)
  first = rows.start + 1 if rows.first_target is None else rows.first_target
  return data.behaviors[np.where(index + 1 >= first[:, None], index + 1, 0), 0]


def gather_history(data: SequenceData, rows: Rows) -> np.ndarray:
  """`[N, H]` every item before the target (all of `[start, end)`), right-padded with 0."""
  width = max(int((rows.end - rows.start).max()), 1)
  index = rows.start[:, None] + np.arange(width)
  return data.behaviors[np.where(index < rows.end[:, None], index, 0), 0]


def row_lengths(rows: Rows, max_len: int) -> np.ndarray:
  """`[N]` the number of behaviors in each row's input."""
  return np.minimum(rows.end - rows.start, max_len)


def batch_width(longest: int, max_len: int, length_buckets: tuple[int, ...]) -> int:
  """The width of a batch whose longest input is `longest`: the smallest bucket at or above
  it, never more than `max_len`."""
  return min([b for b in length_buckets if b >= longest] + [max_len])


def pad_rows(rows: Rows, multiple: int) -> Rows:
  """Pads with empty rows (start = end = 0: no input, target 0 = ignored) to a multiple."""
  zeros = np.zeros(-len(rows) % multiple, rows.start.dtype)
  pad = lambda array: None if array is None else np.concatenate([array, zeros])
  return Rows(pad(rows.start), pad(rows.end), pad(rows.first_target))


@dataclasses.dataclass(frozen=True)
class TrainBatches:
  """Epochs of shuffled training batches, addressable by (epoch, step) for exact resume.

  The order of epoch e depends only on (seed, e); the last batch of an epoch is padded with
  empty rows rather than dropped. With `group_by_length` = G > 0, the shuffled rows are
  sorted by length within pools of G batches, cut into batches, and the batches shuffled:
  each batch holds rows of alike lengths, still drawn at random (the tf.data
  `bucket_by_sequence_length` idea, with no row held back).
  """
  data: SequenceData
  rows: Rows
  max_len: int
  batch_size: int
  sequence_targets: bool
  seed: int
  length_buckets: tuple[int, ...] = ()
  group_by_length: int = 0

  @property
  def steps_per_epoch(self) -> int:
    return -(-len(self.rows) // self.batch_size)

  def batch_rows(self, epoch: int) -> np.ndarray:
    """`[steps, batch_size]` row indices of epoch `epoch`'s batches, -1 past the last row."""
    rng = np.random.default_rng([self.seed, epoch])
    order = rng.permutation(len(self.rows))
    if self.group_by_length:
      pool = np.arange(len(order)) // (self.group_by_length * self.batch_size)
      order = order[np.lexsort((row_lengths(self.rows, self.max_len)[order], pool))]
    index = np.pad(order, (0, self.steps_per_epoch * self.batch_size - len(order)),
                   constant_values=-1).reshape(self.steps_per_epoch, self.batch_size)
    return index[rng.permutation(len(index))] if self.group_by_length else index

  def epoch(self, epoch: int, first_step: int = 0) -> Iterator[dict[str, np.ndarray]]:
    for index in self.batch_rows(epoch)[first_step:]:
      rows = pad_rows(self.rows.take(index[index >= 0]), self.batch_size)
      width = batch_width(int(row_lengths(rows, self.max_len).max()), self.max_len,
                          self.length_buckets)
      yield dict(inputs=gather_inputs(self.data, rows, width),
                 targets=gather_targets(self.data, rows, width, self.sequence_targets))
