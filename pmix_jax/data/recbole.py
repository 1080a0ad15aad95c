"""RecBole atomic files: a tab-separated `.inter` with a typed header (`name:type`).

`user_id` and `item_id` (tokens) are required; `timestamp` orders each user's behaviors
(file order when absent); `rating` becomes the `action` field (rounded to an integer >= 1).
`category` comes from the `class` column (first token) of the `.item` file beside it.
"""

from __future__ import annotations

import os

import numpy as np

from pmix_jax.data.readers import parse_numbers, read_text, split_table
from pmix_jax.data.sequences import InteractionLog, time_fields
from pmix_jax.errors import DataError


def read_atomic(path: str) -> dict[str, np.ndarray]:
  """Column name (type stripped) -> string tokens, for a RecBole atomic file."""
  lines = read_text(path).splitlines()
  header = lines[0].split('\t')
  names = []
  for column in header:
    name, _, kind = column.partition(':')
    if kind not in ('token', 'token_seq', 'float', 'float_seq'):
      raise DataError(f'{path}:1: header field {column!r} is not name:type with type '
                      'token, token_seq, float or float_seq')
    names.append(name)
  table = split_table(path, lines[1:], tuple(names), '\t', first_line=2)
  return {name: table[:, i] for i, name in enumerate(names)}


def load_recbole(path: str, features: tuple[str, ...]) -> InteractionLog:
  if not path.endswith('.inter'):
    raise DataError(f'config.data.path must name a RecBole .inter file, not {path!r}')
  columns = read_atomic(path)
  for required in ('user_id', 'item_id'):
    if required not in columns:
      raise DataError(f'{path}:1: header has no {required!r} column')
  count = len(columns['user_id'])
  timestamp = (parse_numbers(path, columns['timestamp'], 'timestamp', np.float64, 2)
               if 'timestamp' in columns else np.arange(count, dtype=np.float64))
  fields = {}
  if 'rating' in columns:
    rating = np.rint(parse_numbers(path, columns['rating'], 'rating', np.float64, 2))
    if (rating < 1).any():
      line = int(np.argmax(rating < 1)) + 2
      raise DataError(f'{path}:{line}: field \'rating\' must be >= 1 to serve as an action')
    fields['action'] = rating.astype(np.int64)
  if 'timestamp' in columns:
    fields.update(time_fields(timestamp))
  if 'category' in features:
    item_path = os.path.splitext(path)[0] + '.item'
    items = read_atomic(item_path)
    if 'class' not in items:
      raise DataError(f'{item_path}:1: header has no \'class\' column for the category')
    first_class = np.array([tokens.split(' ')[0] for tokens in items['class']])
    class_ids = np.unique(first_class, return_inverse=True)[1] + 1
    order = np.argsort(items['item_id'])
    index = np.clip(np.searchsorted(items['item_id'][order], columns['item_id']), 0,
                    len(order) - 1)
    missing = items['item_id'][order][index] != columns['item_id']
    if missing.any():
      line = int(np.argmax(missing)) + 2
      raise DataError(f'{path}:{line}: item {columns["item_id"][line - 2]!r} is not in '
                      f'{item_path}')
    fields['category'] = class_ids[order][index]
  return InteractionLog(user=columns['user_id'], item=columns['item_id'], timestamp=timestamp,
                        fields=fields, source=path)
