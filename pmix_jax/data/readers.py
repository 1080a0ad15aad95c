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


def split_table(path: str, lines: list[str], fields: tuple[str, ...], delimiter: str,
                first_line: int = 1) -> np.ndarray:
  """`[len(lines), len(fields)]` string tokens; a line with another column count is an
  error naming it (`first_line` is the file line number of `lines[0]`)."""
  # Vectorised column count of every line: delimiters between consecutive newlines.
  raw = np.frombuffer('\n'.join(lines).encode(), np.uint8)
  delimiters = np.concatenate([[0], np.cumsum(raw == ord(delimiter))])
  line_ends = np.concatenate([np.flatnonzero(raw == ord('\n')), [len(raw)]])
  columns = np.diff(np.concatenate([[0], delimiters[line_ends]])) + 1
  if (columns != len(fields)).any():
    bad = int(np.argmax(columns != len(fields)))
    raise DataError(f'{path}:{bad + first_line}: expected {len(fields)} fields '
                    f'({", ".join(fields)}), found {columns[bad]}: {lines[bad]!r}')
  return np.array(delimiter.join(lines).split(delimiter)).reshape(len(lines), len(fields))


def parse_numbers(path: str, tokens: np.ndarray, field: str, dtype: type,
                  first_line: int = 1) -> np.ndarray:
  """`tokens` `[N]` as numbers; the first that does not parse is an error naming its line."""
  try:
    return tokens.astype(dtype)
  except (ValueError, OverflowError):
    for line, token in enumerate(tokens, start=first_line):
      try:
        dtype(token)
        if dtype is np.int64 and not -2**63 <= int(token) < 2**63:
          raise OverflowError
      except (ValueError, OverflowError):
        kind = 'an integer' if dtype is np.int64 else 'a number'
        raise DataError(f'{path}:{line}: field {field!r} is not {kind} '
                        f'(64-bit): {str(token)!r}') from None
    raise


def read_int_table(path: str, fields: tuple[str, ...], delimiter: str
                   ) -> dict[str, np.ndarray]:
  """Reads a headerless table of integers, `len(fields)` columns, into named int64 columns.

  Every line must have exactly `len(fields)` values separated by the one-character
  `delimiter`: a malformed or blank line is an error naming it, never skipped.
  """
  table = split_table(path, read_text(path).splitlines(), fields, delimiter)
  return {name: parse_numbers(path, table[:, i], name, np.int64)
          for i, name in enumerate(fields)}


def check_range(path: str, table: dict[str, np.ndarray], field: str, low: int,
                high: int | None = None) -> None:
  """Raises naming the first line whose `field` is outside [low, high]."""
  column = table[field]
  bad = (column < low) | (column > high if high is not None else False)
  if bad.any():
    line = int(np.argmax(bad)) + 1
    bounds = f'[{low}, {high}]' if high is not None else f'>= {low}'
    raise DataError(f'{path}:{line}: field {field!r} = {column[line - 1]} is outside {bounds}')


def lookup(path: str, table: dict[int, int], keys: np.ndarray, key: str, what: str,
           keys_path: str | None = None) -> np.ndarray:
  """`table[k]` for every k of `keys` (field `key` of `keys_path`, one per line, when
  given); a key missing from the table (read from `path`) is an error naming it."""
  ids = np.fromiter(table, np.int64, len(table))
  values = np.fromiter(table.values(), np.int64, len(table))
  order = np.argsort(ids)
  index = np.clip(np.searchsorted(ids[order], keys), 0, len(ids) - 1)
  missing = ids[order][index] != keys
  if missing.any():
    first = int(np.argmax(missing))
    if keys_path is None:
      raise DataError(f'{path}: {key} {keys[first]} has no {what}')
    raise DataError(f'{keys_path}:{first + 1}: field {key!r} = {keys[first]} has no {what} '
                    f'in {path}')
  return values[order][index]
