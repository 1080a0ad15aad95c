"""MovieLens in the raw GroupLens layout, and ML-1M as chronological sequences.

ML-100K: `u.data` (tab-separated user, item, rating, unix timestamp; required) and `u.item`
(`|`-separated, Latin-1; needed only for the `category` field, the movie's first listed genre).
Every rating counts as an implicit interaction; the rating becomes the `action` field.
"""

from __future__ import annotations

import os

import numpy as np

from pmix_jax.data import sequence_files
from pmix_jax.data.readers import (check_range, parse_numbers, read_int_table, read_text,
                                   split_table)
from pmix_jax.data.sequences import InteractionLog, time_fields
from pmix_jax.errors import DataError

NUM_GENRES = 19


def read_ml100k_genres(path: str) -> dict[int, int]:
  """Movie id -> first genre index + 1 (1 = 'unknown' genre, also when no flag is set)."""
  genres = {}
  for number, line in enumerate(read_text(path, encoding='latin-1').splitlines(), start=1):
    values = line.split('|')
    if len(values) != 5 + NUM_GENRES:
      raise DataError(f'{path}:{number}: expected {5 + NUM_GENRES} |-separated fields, '
                      f'found {len(values)}')
    try:
      movie, flags = int(values[0]), [int(v) for v in values[5:]]
    except ValueError:
      raise DataError(f'{path}:{number}: field movie id or a genre flag is not an integer'
                      ) from None
    genres[movie] = int(np.argmax(flags)) + 1
  return genres


def load_ml100k(directory: str, features: tuple[str, ...]) -> InteractionLog:
  if not directory:
    raise DataError('config.data.path must name the directory holding MovieLens-100K u.data')
  path = os.path.join(directory, 'u.data')
  table = read_int_table(path, ('user', 'item', 'rating', 'timestamp'), delimiter='\t')
  check_range(path, table, 'user', 1)
  check_range(path, table, 'item', 1)
  check_range(path, table, 'rating', 1, 5)
  check_range(path, table, 'timestamp', 0)
  fields = dict(action=table['rating'], **time_fields(table['timestamp']))
  if 'category' in features:
    item_path = os.path.join(directory, 'u.item')
    genres = read_ml100k_genres(item_path)
    unknown = ~np.isin(table['item'], np.fromiter(genres, np.int64))
    if unknown.any():
      line = int(np.argmax(unknown)) + 1
      raise DataError(f'{path}:{line}: field \'item\' = {table["item"][line - 1]} '
                      f'is not listed in {item_path}')
    lookup = np.zeros(max(genres) + 1, np.int64)
    lookup[list(genres)] = list(genres.values())
    fields['category'] = lookup[table['item']]
  return InteractionLog(user=table['user'], item=table['item'], timestamp=table['timestamp'],
                        fields=fields, source=path)


ML1M_GENRES = ('Action', 'Adventure', 'Animation', "Children's", 'Comedy', 'Crime',
               'Documentary', 'Drama', 'Fantasy', 'Film-Noir', 'Horror', 'Musical', 'Mystery',
               'Romance', 'Sci-Fi', 'Thriller', 'War', 'Western')


def read_ml1m_genres(path: str) -> dict[int, int]:
  """Movie id -> index + 1 of its first listed genre, from `movies.dat` (Latin-1)."""
  genres = {}
  for number, line in enumerate(read_text(path, encoding='latin-1').splitlines(), start=1):
    values = line.split('::')
    if len(values) != 3:
      raise DataError(f'{path}:{number}: expected 3 ::-separated fields (MovieID, Title, '
                      f'Genres), found {len(values)}')
    first = values[2].split('|')[0]
    if not values[0].isdigit() or first not in ML1M_GENRES:
      field = 'MovieID' if not values[0].isdigit() else 'Genres'
      raise DataError(f'{path}:{number}: field {field!r} is invalid: {line!r}')
    genres[int(values[0])] = ML1M_GENRES.index(first) + 1
  return genres


def load_ml1m_sequences(directory: str, features: tuple[str, ...]) -> InteractionLog:
  """ML-1M as time-ordered sequences (`ml-1m_seq_chrono.txt`, no ratings or timestamps);
  `category` is the first genre from `movies.dat`."""
  if not directory:
    raise DataError('config.data.path must name the directory holding ml-1m_seq_chrono.txt')
  path = os.path.join(directory, 'ml-1m_seq_chrono.txt')
  user, item, position = sequence_files.read_sequences(path)
  fields = {}
  if 'category' in features:
    movies = os.path.join(directory, 'movies.dat')
    fields['category'] = sequence_files.lookup(movies, read_ml1m_genres(movies), item,
                                               'genre')
  return InteractionLog(user=user, item=item, timestamp=position, fields=fields, source=path)


def load_ml1m(directory: str, features: tuple[str, ...]) -> InteractionLog:
  """ML-1M raw: `ratings.dat` (`UserID::MovieID::Rating::Timestamp`), `movies.dat` genres."""
  if not directory:
    raise DataError('config.data.path must name the directory holding ML-1M ratings.dat')
  path = os.path.join(directory, 'ratings.dat')
  fields = ('user', 'item', 'rating', 'timestamp')
  lines = read_text(path).replace('::', '\t').splitlines()  # A one-character separator.
  try:
    tokens = split_table(path, lines, fields, '\t')
  except DataError as error:  # Show the line as it is in the file.
    raise DataError(str(error).replace('\\t', '::')) from None
  table = {name: parse_numbers(path, tokens[:, i], name, np.int64)
           for i, name in enumerate(fields)}
  check_range(path, table, 'user', 1)
  check_range(path, table, 'item', 1)
  check_range(path, table, 'rating', 1, 5)
  check_range(path, table, 'timestamp', 0)
  log_fields = dict(action=table['rating'], **time_fields(table['timestamp']))
  if 'category' in features:
    movies = os.path.join(directory, 'movies.dat')
    log_fields['category'] = sequence_files.lookup(movies, read_ml1m_genres(movies),
                                                   table['item'], 'genre')
  return InteractionLog(user=table['user'], item=table['item'], timestamp=table['timestamp'],
                        fields=log_fields, source=path)
