"""One-line-per-user sequence files, as SASRec, S3-Rec, FMLP-Rec and ICLRec ship them.

Each line is `user item_1 item_2 ... item_n`, space-separated, items in chronological order;
there are no timestamps, so a behavior's position is its time. The S3-Rec
`<name>_item2attributes.json` beside the file (`{"item": [attribute, ...]}`) gives each item's
`category` field (its first listed attribute).
"""

from __future__ import annotations

import json
import os

import numpy as np

from pmix_jax.data.readers import lookup, read_text
from pmix_jax.data.sequences import InteractionLog
from pmix_jax.errors import DataError


def read_sequences(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """`(user, item, position)` arrays, one entry per behavior, from a sequence file."""
  users, items, positions = [], [], []
  for number, line in enumerate(read_text(path).splitlines(), start=1):
    values = line.split()
    if len(values) < 2:
      raise DataError(f'{path}:{number}: expected a user id and at least one item, '
                      f'found {line!r}')
    try:
      ids = np.array(values, dtype=np.int64)
    except (ValueError, OverflowError):
      bad = next(i for i, v in enumerate(values) if not v.lstrip('-').isdigit())
      field = 'user' if bad == 0 else f'item {bad}'
      raise DataError(f'{path}:{number}: field {field!r} is not an integer: '
                      f'{values[bad]!r}') from None
    users.append(np.full(len(ids) - 1, ids[0]))
    items.append(ids[1:])
    positions.append(np.arange(len(ids) - 1))
  return np.concatenate(users), np.concatenate(items), np.concatenate(positions)


def read_item_attributes(path: str) -> dict[int, int]:
  """Item id -> first attribute id + 1 (so that 0 stays padding) from item2attributes JSON."""
  try:
    table = json.loads(read_text(path))
  except json.JSONDecodeError as error:
    raise DataError(f'{path}:{error.lineno}: not valid JSON: {error.msg}') from None
  attributes = {}
  for item, values in table.items():
    if not (item.isdigit() and isinstance(values, list) and values and
            all(isinstance(v, int) and v >= 0 for v in values)):
      raise DataError(f'{path}: item {item!r} must map to a non-empty list of attribute '
                      f'ids >= 0, found {values!r}')
    attributes[int(item)] = values[0] + 1
  return attributes


def load_sequence_file(path: str, features: tuple[str, ...]) -> InteractionLog:
  """A sequence file; `category` from `<stem>_item2attributes.json` beside it."""
  if not path:
    raise DataError('config.data.path must name the sequence file (e.g. .../Beauty.txt)')
  user, item, position = read_sequences(path)
  fields = {}
  if 'category' in features:
    attributes_path = os.path.splitext(path)[0] + '_item2attributes.json'
    fields['category'] = lookup(attributes_path, read_item_attributes(attributes_path), item,
                                'item', 'attributes')
  return InteractionLog(user=user, item=item, timestamp=position, fields=fields, source=path)
