"""Vectorised readers of delimited text files with errors that name file, line and field."""

from __future__ import annotations

import os

import numpy as np

from pmix_jax.errors import DataError


def read_text(path: str, encoding: str = 'utf-8') -> str:
  if not os.path.isfile(path):
    raise DataError(f'{path}: file not found')
  with open(path, 'rb') as f:
    text = f.read().decode(encoding)
  if not text.strip():
    raise DataError(f'{path}: file is empty')
  return text


def read_int_table(path: str, fields: tuple[str, ...], delimiter: str
                   ) -> dict[str, np.ndarray]:
  """Reads a headerless table of integers, `len(fields)` columns, into named int64 columns.

  Every line must have exactly `len(fields)` values separated by the one-character
  `delimiter`: a malformed or blank line is an error naming it, never skipped.
  """
  lines = read_text(path).splitlines()
  # Vectorised column count of every line: delimiters between consecutive newlines.
  raw = np.frombuffer('\n'.join(lines).encode(), np.uint8)
  delimiters = np.concatenate([[0], np.cumsum(raw == ord(delimiter))])
  line_ends = np.concatenate([np.flatnonzero(raw == ord('\n')), [len(raw)]])
  columns = np.diff(np.concatenate([[0], delimiters[line_ends]])) + 1
  try:
    if (columns != len(fields)).any():
      raise ValueError
    table = np.array(delimiter.join(lines).split(delimiter), dtype=np.int64)
  except (ValueError, OverflowError):
    _raise_first_bad_line(path, lines, fields, delimiter)
  table = table.reshape(len(lines), len(fields))
  return {name: table[:, i] for i, name in enumerate(fields)}


def _raise_first_bad_line(path: str, lines: list[str], fields: tuple[str, ...],
                          delimiter: str) -> None:
  for number, line in enumerate(lines, start=1):
    values = line.split(delimiter)
    if len(values) != len(fields):
      raise DataError(f'{path}:{number}: expected {len(fields)} fields '
                      f'({", ".join(fields)}), found {len(values)}: {line!r}')
    for name, value in zip(fields, values):
      try:
        number_value = int(value)
      except ValueError:
        raise DataError(f'{path}:{number}: field {name!r} is not an integer: {value!r}'
                        ) from None
      if not -2**63 <= number_value < 2**63:
        raise DataError(f'{path}:{number}: field {name!r} = {value} does not fit in 64 bits')
  raise DataError(f'{path}: could not parse as a table of {fields}')


def check_range(path: str, table: dict[str, np.ndarray], field: str, low: int,
                high: int | None = None) -> None:
  """Raises naming the first line whose `field` is outside [low, high]."""
  column = table[field]
  bad = (column < low) | (column > high if high is not None else False)
  if bad.any():
    line = int(np.argmax(bad)) + 1
    bounds = f'[{low}, {high}]' if high is not None else f'>= {low}'
    raise DataError(f'{path}:{line}: field {field!r} = {column[line - 1]} is outside {bounds}')
