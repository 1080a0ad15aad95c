"""A seeded synthetic interaction log with structure a sequence model can learn.

Every user has two interest categories, a favourite "routine" item consumed every `period`
behaviors (3 to 6), and follows item-to-item transitions: after an item they liked (action
>= 4) they move to that item's fixed successor with probability `follow`. Otherwise they pick
an item of one of their interests by (Zipf) popularity, or, with probability `explore`, any
item by global popularity, which they then tend to rate low (1-3). Popularity is skewed, so a
most-popular ranker is a real baseline, but most of the signal (transitions, periods, the
meaning of the action) is sequential. Timestamps advance by exponential gaps with a daily
rhythm. No files are read or written.
"""

from __future__ import annotations

import numpy as np

from pmix_jax.data.sequences import InteractionLog, time_fields

FOLLOW = 0.6
EXPLORE = 0.1


def _sample(cumulative: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Inverse-CDF draw of one column per row of `cumulative[rows]`."""
  return (cumulative[rows] < rng.random((len(rows), 1))).sum(axis=1)


def generate(num_users: int, num_items: int, num_categories: int, mean_length: int,
             seed: int) -> InteractionLog:
  if not (num_items >= 2 * num_categories and num_categories >= 2 and mean_length >= 5):
    raise ValueError('synthetic data needs num_categories >= 2, num_items >= '
                     '2 * num_categories and mean_length >= 5')
  rng = np.random.default_rng(seed)
  category = rng.permutation(np.arange(num_items) % num_categories)
  popularity = 1.0 / (1.0 + rng.permutation(num_items)) ** 0.8
  global_cdf = np.cumsum(popularity / popularity.sum())[None]
  members = [np.flatnonzero(category == c) for c in range(num_categories)]
  width = max(len(m) for m in members)
  member_table = np.stack([np.pad(m, (0, width - len(m)), mode='edge') for m in members])
  category_cdf = np.stack([np.pad(np.cumsum(popularity[m] / popularity[m].sum()),
                                  (0, width - len(m)), constant_values=2.0) for m in members])
  # Each item's successor: the next item on a random cycle through its category.
  successor = np.empty(num_items, np.int64)
  for m in members:
    cycle = rng.permutation(m)
    successor[cycle] = np.roll(cycle, -1)

  interests = np.stack([rng.choice(num_categories, 2, replace=False) for _ in range(num_users)])
  routine = member_table[interests[:, 0], _sample(category_cdf, interests[:, 0], rng)]
  period = rng.integers(3, 7, num_users)
  lengths = 5 + rng.poisson(mean_length - 5, num_users)

  users = np.arange(num_users)
  items = np.zeros((num_users, lengths.max()), np.int64)
  actions = np.zeros_like(items)
  previous, liked = routine.copy(), np.zeros(num_users, bool)
  for t in range(lengths.max()):
    interest = interests[users, rng.integers(0, 2, num_users)]
    choice = member_table[interest, _sample(category_cdf, interest, rng)]
    roll = rng.random(num_users)
    explored = roll < EXPLORE
    choice = np.where(explored, _sample(global_cdf, np.zeros(num_users, int), rng), choice)
    choice = np.where(liked & (roll > 1 - FOLLOW), successor[previous], choice)
    choice = np.where(t % period == period - 1, routine, choice)
    in_interest = (category[choice][:, None] == interests).any(axis=1)
    action = np.where(in_interest & ~explored, rng.integers(4, 6, num_users),
                      rng.integers(1, 4, num_users))
    items[:, t], actions[:, t] = choice, action
    previous, liked = choice, action >= 4

  valid = np.arange(lengths.max())[None] < lengths[:, None]
  gaps = rng.exponential(3600.0, items.shape) * (1 + 8 * (rng.random(items.shape) < 0.1))
  timestamps = 1_600_000_000 + np.cumsum(gaps, axis=1).astype(np.int64)
  user, item = np.broadcast_to(users[:, None], items.shape)[valid], items[valid] + 1
  timestamp = timestamps[valid]
  return InteractionLog(
      user=user, item=item, timestamp=timestamp,
      fields=dict(action=actions[valid], category=category[item - 1] + 1,
                  **time_fields(timestamp)),
      source=f'synthetic(num_users={num_users}, num_items={num_items}, seed={seed})')

