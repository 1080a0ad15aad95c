"""From an interaction log to per-user time-ordered sequences, split leave-one-out.

Conventions used everywhere in the package:
- item id 0 and every feature value 0 are padding; real ids start at 1;
- `SequenceData.behaviors` is a `[T + 1, F]` table, row 0 all padding, then every user's
  behaviors contiguous and in time order; field 0 is the item id;
- every behavior has a *stage*: 0 train, 1 validation target, 2 test target. Within a user
  the stages never decrease, so training behaviors are a prefix of the sequence, and an
  evaluation target's input is everything the user did before it.
- `leave_one_out` (default): a user with n >= 3 behaviors has the first n - 2 for training,
  behavior n - 1 as the validation target and behavior n as the test target; a user with
  fewer than 3 behaviors only trains (SASRec's rule) and is counted in `stats()`.
- `temporal` (SURGE, MGNM): all records ordered by time, the first 70% train, the next 10%
  validation targets, the last 20% test targets; `per_user_temporal` splits each user's
  sequence 70/10/20 by position (for data whose only time is the order).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from pmix_jax.errors import DataError


@dataclasses.dataclass(frozen=True)
class InteractionLog:
  """Raw interactions, one entry per behavior, in any order.

  Attributes:
    user: `[T]` raw user ids (any integers).
    item: `[T]` raw item ids (any integers).
    timestamp: `[T]` ordering key within a user; ties keep the order of the log.
    fields: side feature name -> `[T]` categorical values >= 1 (0 is reserved for padding).
    source: where the log came from, for messages.
  """
  user: np.ndarray
  item: np.ndarray
  timestamp: np.ndarray
  fields: dict[str, np.ndarray]
  source: str

  def __post_init__(self):
    n = len(self.user)
    for name, column in [('item', self.item), ('timestamp', self.timestamp),
                         *self.fields.items()]:
      if len(column) != n:
        raise DataError(f'{self.source}: field {name!r} has {len(column)} rows, expected {n}')
    for name, column in self.fields.items():
      if n and column.min() < 1:
        raise DataError(f'{self.source}: field {name!r} has a value < 1 (0 is padding)')


@dataclasses.dataclass(frozen=True)
class SequenceData:
  """Time-ordered sequences of all users, with the leave-one-out split.

  Attributes:
    field_names: names of the F fields of a behavior; `field_names[0] == 'item'`.
    vocab_sizes: per field, the number of values including padding 0.
    behaviors: `[T + 1, F]` int32; row 0 is padding, users are contiguous blocks.
    stage: `[T + 1]` int8, 0 train, 1 validation target, 2 test target (row 0: 0).
    user_start: `[U]` row of each user's first behavior in `behaviors`.
    user_length: `[U]` number of behaviors of each user.
    item_ids: `[num_items]` raw id of item index i + 1 (ints or strings, as in the log).
    user_ids: `[U]` raw id of each user index.
    source: description of the origin.
    counts: what preprocessing removed (interactions, users, items) and the number of
      duplicated (user, item, timestamp) rows, which are kept as repeated behaviors.
  """
  field_names: tuple[str, ...]
  vocab_sizes: tuple[int, ...]
  behaviors: np.ndarray
  stage: np.ndarray
  user_start: np.ndarray
  user_length: np.ndarray
  item_ids: np.ndarray
  user_ids: np.ndarray
  source: str
  counts: dict[str, int] = dataclasses.field(default_factory=dict)

  @property
  def num_items(self) -> int:
    return self.vocab_sizes[0] - 1

  @property
  def num_users(self) -> int:
    return len(self.user_start)

  @property
  def owner(self) -> np.ndarray:
    """`[T]` user index of each behavior row 1..T."""
    return np.repeat(np.arange(self.num_users), self.user_length)

  @property
  def train_end(self) -> np.ndarray:
    """`[U]` row one past each user's last training behavior."""
    train = np.bincount(self.owner, self.stage[1:] == 0, minlength=self.num_users)
    return self.user_start + train.astype(np.int64)

  def targets(self, split: str) -> np.ndarray:
    """Rows of the behaviors that are `split` ('valid' or 'test') targets, in row order."""
    return np.flatnonzero(self.stage == {'valid': 1, 'test': 2}[split])

  def train_item_counts(self) -> np.ndarray:
    """`[num_items + 1]` occurrences of each item among training behaviors (the popularity
    a most-popular ranker may use without seeing validation or test targets)."""
    in_train = self.stage[1:] == 0
    return np.bincount(self.behaviors[1:][in_train, 0], minlength=self.vocab_sizes[0])

  def cold_share(self, split: str) -> float:
    """Share of the `split` targets whose item never occurs among training behaviors (no
    model can have learned its embedding; their share differs between splits)."""
    targets = self.behaviors[self.targets(split), 0]
    return float(np.mean(self.train_item_counts()[targets] == 0)) if len(targets) else 0.0

  def stats(self) -> dict[str, float]:
    lengths = self.user_length
    return dict(
        users=int(self.num_users), items=int(self.num_items),
        interactions=int(lengths.sum()),
        users_train_only=int(self.num_users - len(np.unique(self.owner[self.stage[1:] > 0]))),
        valid_targets=len(self.targets('valid')), test_targets=len(self.targets('test')),
        valid_cold_targets=self.cold_share('valid'), test_cold_targets=self.cold_share('test'),
        density=float(lengths.sum() / (self.num_users * self.num_items)),
        length_p50=float(np.percentile(lengths, 50)),
        length_p90=float(np.percentile(lengths, 90)),
        length_max=int(lengths.max()), **self.counts)


def time_fields(timestamp: np.ndarray) -> dict[str, np.ndarray]:
  """Hour of day (1..24) and day of week (1..7, Monday = 1) of unix seconds, in UTC."""
  seconds = timestamp.astype(np.int64)
  return dict(hour=(seconds // 3600) % 24 + 1, weekday=(seconds // 86400 + 3) % 7 + 1)


def leave_one_out(order: np.ndarray, user_index: np.ndarray, timestamp: np.ndarray
                  ) -> np.ndarray:
  """Stages of the time-ordered rows `order`: the last two of users with >= 3 behaviors."""
  user = user_index[order]
  length = np.bincount(user)
  from_end = np.repeat(np.cumsum(length), length) - np.arange(len(user)) - 1  # 0 = last.
  return np.where(length[user] >= 3, np.clip(2 - from_end, 0, 2), 0).astype(np.int8)


def temporal(order: np.ndarray, user_index: np.ndarray, timestamp: np.ndarray) -> np.ndarray:
  """Global 70/10/20 split of all records by time (ties by log order)."""
  by_time = np.lexsort((np.arange(len(timestamp)), timestamp))
  quantile = np.empty(len(timestamp))
  quantile[by_time] = np.arange(len(timestamp)) / len(timestamp)
  stage = np.digitize(quantile, [0.7, 0.8]).astype(np.int8)
  return stage[order]


def per_user_temporal(order: np.ndarray, user_index: np.ndarray, timestamp: np.ndarray
                      ) -> np.ndarray:
  """Each user's sequence split 70/10/20 by position."""
  user = user_index[order]
  length = np.bincount(user)
  position = np.arange(len(user)) - np.repeat(np.cumsum(length) - length, length)
  return np.digitize(position / length[user], [0.7, 0.8]).astype(np.int8)


SPLITS = dict(leave_one_out=leave_one_out, temporal=temporal,
              per_user_temporal=per_user_temporal)


def build_sequences(log: InteractionLog, feature_names: tuple[str, ...],
                    split: str = 'leave_one_out') -> SequenceData:
  """Remaps ids to 1..N, orders each user's behaviors by time (stable) and lays them out.

  The feature name `user` is derived here, for every dataset: the behavior's user index
  + 1, which models with user embeddings (BPR-MF, FPMC) read.
  """
  if not len(log.user):
    raise DataError(f'{log.source}: no interactions')
  user_ids, user_index = np.unique(log.user, return_inverse=True)
  if 'user' in feature_names:
    log = dataclasses.replace(log, fields={**log.fields, 'user': user_index + 1})
  missing = [name for name in feature_names if name not in log.fields]
  if missing:
    raise DataError(f'{log.source}: feature field(s) {missing} requested by '
                    f'config.data.features are not provided; available: '
                    f'{sorted({*log.fields, "user"})}')
  item_ids, item_index = np.unique(log.item, return_inverse=True)
  # Stable: equal (user, timestamp) keep their order in the log.
  order = np.lexsort((np.arange(len(user_index)), log.timestamp, user_index))
  columns = [item_index[order] + 1] + [log.fields[name][order] for name in feature_names]
  behaviors = np.zeros((len(order) + 1, len(columns)), np.int32)
  behaviors[1:] = np.stack(columns, axis=1)
  stage = np.zeros(len(order) + 1, np.int8)
  stage[1:] = SPLITS[split](order, user_index, log.timestamp)
  user_length = np.bincount(user_index, minlength=len(user_ids))
  user_start = 1 + np.concatenate([[0], np.cumsum(user_length)[:-1]])
  keys = np.stack([user_index, item_index, np.unique(log.timestamp, return_inverse=True)[1]])
  duplicates = len(order) - np.unique(keys, axis=1).shape[1]
  vocab_sizes = (len(item_ids) + 1,) + tuple(
      int(log.fields[name].max()) + 1 for name in feature_names)
  return SequenceData(
      field_names=('item',) + tuple(feature_names), vocab_sizes=vocab_sizes,
      behaviors=behaviors, stage=stage, user_start=user_start.astype(np.int64),
      user_length=user_length.astype(np.int64),
      item_ids=item_ids, user_ids=user_ids, source=log.source,
      counts=dict(duplicate_rows=int(duplicates)))
