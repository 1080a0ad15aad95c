"""RecBole atomic files: a tab-separated `.inter` with a typed header (`name:type`).

`user_id` and `item_id` (tokens) are required; `timestamp` orders each user's behaviors
(file order when absent); `rating` becomes the `action` field (rounded to an integer >= 1).
Any other feature named in `config.data.features` is looked up, in this order, among the
`.inter` columns, the `.item` file's (by the behavior's item) and the `.user` file's (by its
user) beside it, and becomes a categorical field (distinct values numbered from 1; of a
`token_seq`, the first token). Two names follow the other loaders: `category` is the
`.item` file's `class` column, `year` its `release_year`.
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


ALIASES = {'category': 'class', 'year': 'release_year'}


def _categorical(tokens: np.ndarray) -> np.ndarray:
  """Values >= 1 numbering the distinct first tokens (a token_seq's first token)."""
  first = np.char.partition(tokens.astype(str), ' ')[:, 0]
  return np.unique(first, return_inverse=True)[1] + 1


def _lookup(path: str, keys: np.ndarray, side_path: str, side_keys: np.ndarray,
            side_values: np.ndarray, key: str) -> np.ndarray:
  """The categorical `side_values` of each of `keys` (rows of `path`) in `side_path`."""
  values = _categorical(side_values)
  order = np.argsort(side_keys)
  index = np.clip(np.searchsorted(side_keys[order], keys), 0, len(order) - 1)
  missing = side_keys[order][index] != keys
  if missing.any():
    line = int(np.argmax(missing)) + 2
    raise DataError(f'{path}:{line}: field {key!r} = {str(keys[line - 2])!r} is not in '
                    f'{side_path}')
  return values[order][index]


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
  side_files = {}  # Read at most once each, only when a feature needs them.
  for name in features:
    if name in fields:
      continue
    column = ALIASES.get(name, name)
    if column in columns:
      fields[name] = _categorical(columns[column])
      continue
    for suffix, key in (('.item', 'item_id'), ('.user', 'user_id')):
      side_path = os.path.splitext(path)[0] + suffix
      if os.path.exists(side_path) and suffix not in side_files:
        side_files[suffix] = read_atomic(side_path)
      side = side_files.get(suffix, {})
      if column in side:
        if key not in side:
          raise DataError(f'{side_path}:1: header has no {key!r} column')
        fields[name] = _lookup(path, columns[key], side_path, side[key], side[column], key)
        break
    else:
      raise DataError(f'{path}: no column {column!r} for the feature {name!r} in it or in '
                      'the .item/.user files beside it')
  return InteractionLog(user=columns['user_id'], item=columns['item_id'], timestamp=timestamp,
                        fields=fields, source=path)
