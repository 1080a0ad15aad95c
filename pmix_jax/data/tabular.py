"""Interaction tables: a user's own CSV/TSV/Parquet log, and the Amazon 2014 ratings CSV.

A generic log is a delimited text file with a header row naming its columns, or a Parquet
file (`.parquet`/`.pq`, needs the optional `pyarrow`, see requirements-extras.txt);
`config.data.table` says which column is the user, the item, the timestamp and (optionally)
the rating, which becomes the `action` field. Timestamps are numbers (unix seconds give the
`hour` and `weekday` fields) or, in Parquet, timestamp columns. Any other column named in
`config.data.features` becomes a categorical field (its distinct values numbered from 1).
Ids may be any strings or integers. In text, quoted fields are not supported: a quote
character is an error rather than a silent misparse. In Parquet, errors name the 1-based row
as the line, and a null in a used column is an error.

The Amazon ratings files (`ratings_<Category>.csv`) have no header: `user,item,rating,time`.
"""

from __future__ import annotations

import os

import ml_collections
import numpy as np

from pmix_jax.data.readers import parse_numbers, read_text, split_table
from pmix_jax.data.sequences import InteractionLog, time_fields
from pmix_jax.errors import DataError

AMAZON_COLUMNS = ('user', 'item', 'rating', 'timestamp')
PARQUET_SUFFIXES = ('.parquet', '.pq')


def _categorical(values: np.ndarray) -> np.ndarray:
  return np.unique(values, return_inverse=True)[1] + 1


def _check_roles(where: str, names: tuple[str, ...], roles: dict[str, str]) -> None:
  for role, column in roles.items():
    if column and column not in names:
      raise DataError(f'{where}: no column {column!r} (the {role} column); columns: '
                      f'{list(names)}')


def _read_delimited(path: str, delimiter: str, names: tuple[str, ...] | None,
                    roles: dict[str, str]) -> tuple[dict[str, np.ndarray], int]:
  """String columns by name, and the file line of the first row."""
  text = read_text(path)
  if '"' in text:
    line = text[:text.index('"')].count('\n') + 1
    raise DataError(f'{path}:{line}: quoted fields are not supported')
  lines = text.splitlines()
  first_line = 1
  if names is None:
    names, lines, first_line = tuple(lines[0].split(delimiter)), lines[1:], 2
  _check_roles(f'{path}:1', names, roles)
  table = split_table(path, lines, names, delimiter, first_line)
  return {name: table[:, i] for i, name in enumerate(names)}, first_line


def _read_parquet(path: str, roles: dict[str, str], features: tuple[str, ...]
                  ) -> dict[str, np.ndarray]:
  """The columns playing a role or named as features, as numpy arrays (row 1 = line 1)."""
  try:
    import pyarrow as pa  # pylint: disable=import-outside-toplevel
    import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise DataError(f'{path}: reading Parquet needs pyarrow: '
                    'pip install -r requirements-extras.txt') from None
  if not os.path.isfile(path):
    raise DataError(f'{path}: file not found')
  try:
    schema = pq.read_schema(path)
    names = tuple(schema.names)
    _check_roles(path, names, roles)
    wanted = [n for n in names if n in set(roles.values()) | set(features)]
    table = pq.read_table(path, columns=wanted)
  except (pa.ArrowException, OSError) as error:
    raise DataError(f'{path}: not a readable Parquet file: {error}') from None
  if table.num_rows == 0:
    raise DataError(f'{path}: file is empty')
  columns = {}
  for name in wanted:
    column = table.column(name)
    if column.null_count:
      row = int(np.argmax(column.is_null().to_numpy(zero_copy_only=False))) + 1
      raise DataError(f'{path}:{row}: field {name!r} is null')
    if pa.types.is_timestamp(column.type):  # Unix seconds, like the text formats.
      column = column.cast(pa.timestamp('s'), safe=False).cast(pa.int64())
    values = column.to_numpy()
    # Strings arrive as Python objects; fixed-width unicode arrays cache without pickle.
    columns[name] = values.astype(str) if values.dtype == object else values
  return columns


def load_table(path: str, delimiter: str, names: tuple[str, ...] | None,
               roles: dict[str, str], features: tuple[str, ...]) -> InteractionLog:
  """`names=None` reads them from the header row (or the Parquet schema); `roles` maps
  user/item/timestamp/rating to column names (rating may map to '')."""
  if not path:
    raise DataError('config.data.path must name the interaction file')
  if path.lower().endswith(PARQUET_SUFFIXES):
    columns, first_line = _read_parquet(path, roles, features), 1
  else:
    columns, first_line = _read_delimited(path, delimiter, names, roles)
  column = columns.__getitem__
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
    if name not in fields and name in columns:
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
