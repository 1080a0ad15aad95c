"""Delimited interaction logs: a user's own CSV/TSV, and the Amazon 2014 ratings CSV.

A generic log has a header row naming its columns; `config.data.table` says which column is
the user, the item, the timestamp and (optionally) the rating, which becomes the `action`
field. Any other column named in `config.data.features` becomes a categorical field (its
distinct values numbered from 1). Ids may be any strings. Quoted fields are not supported:
a quote character is an error rather than a silent misparse.

The Amazon ratings files (`ratings_<Category>.csv`) have no header: `user,item,rating,time`.
"""

from __future__ import annotations

import ml_collections
import numpy as np

from pmix_jax.data.readers import parse_numbers, read_text, split_table
from pmix_jax.data.sequences import InteractionLog, time_fields
from pmix_jax.errors import DataError

AMAZON_COLUMNS = ('user', 'item', 'rating', 'timestamp')


def _categorical(values: np.ndarray) -> np.ndarray:
  return np.unique(values, return_inverse=True)[1] + 1


def load_table(path: str, delimiter: str, names: tuple[str, ...] | None,
               roles: dict[str, str], features: tuple[str, ...]) -> InteractionLog:
  """`names=None` reads them from the header row; `roles` maps user/item/timestamp/rating
  to column names (rating may map to '')."""
  if not path:
    raise DataError('config.data.path must name the interaction file')
  text = read_text(path)
  if '"' in text:
    line = text[:text.index('"')].count('\n') + 1
    raise DataError(f'{path}:{line}: quoted fields are not supported')
  lines = text.splitlines()
  first_line = 1
  if names is None:
    names, lines, first_line = tuple(lines[0].split(delimiter)), lines[1:], 2
  for role, column in roles.items():
    if column and column not in names:
      raise DataError(f'{path}:1: no column {column!r} (the {role} column); columns: '
                      f'{list(names)}')
  table = split_table(path, lines, names, delimiter, first_line)
  column = lambda name: table[:, names.index(name)]
  timestamp = parse_numbers(path, column(roles['timestamp']), roles['timestamp'], np.float64,
                            first_line)
  fields = dict(time_fields(timestamp))
  if roles.get('rating'):
    rating = np.rint(parse_numbers(path, column(roles['rating']), roles['rating'],
                                   np.float64, first_line))
    if (rating < 1).any():
      line = int(np.argmax(rating < 1)) + first_line
      raise DataError(f'{path}:{line}: field {roles["rating"]!r} must be >= 1')
    fields['action'] = rating.astype(np.int64)
  for name in features:
    if name not in fields and name in names:
      fields[name] = _categorical(column(name))
  return InteractionLog(user=column(roles['user']), item=column(roles['item']),
                        timestamp=timestamp, fields=fields, source=path)


def load_generic(config: ml_collections.ConfigDict) -> InteractionLog:
  table = config.table
  return load_table(config.path, table.delimiter, None,
                    dict(user=table.user, item=table.item, timestamp=table.timestamp,
                         rating=table.rating), tuple(config.features))


def load_amazon_ratings(path: str, features: tuple[str, ...]) -> InteractionLog:
  return load_table(path, ',', AMAZON_COLUMNS, dict(user='user', item='item',
                                                    timestamp='timestamp', rating='rating'),
                    features)
