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
  return ratings_log(path, table, features, os.path.join(directory, 'u.item'),
                     read_ml100k_genres)


def ratings_log(path: str, table: dict[str, np.ndarray], features: tuple[str, ...],
                genre_path: str, read_genres) -> InteractionLog:
  """Checks a MovieLens ratings table and adds its fields: rating as `action`, hour and
  weekday, and the movie's genre from `genre_path` as `category` when asked for."""
  for field, low, high in [('user', 1, None), ('item', 1, None), ('rating', 1, 5),
                           ('timestamp', 0, None)]:
    check_range(path, table, field, low, high)
  fields = dict(action=table['rating'], **time_fields(table['timestamp']))
  if 'category' in features:
    fields['category'] = sequence_files.lookup(genre_path, read_genres(genre_path),
                                               table['item'], 'genre', items_path=path)
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
  return ratings_log(path, table, features, os.path.join(directory, 'movies.dat'),
                     read_ml1m_genres)
