"""MovieLens in the raw GroupLens layout, and ML-1M as chronological sequences.

ML-100K: `u.data` (tab-separated user, item, rating, unix timestamp) with `u.item` (movies,
`|`-separated, Latin-1) and `u.user` (`user id|age|gender|occupation|zip code`). ML-1M:
`ratings.dat` (`UserID::MovieID::Rating::Timestamp`) or `ml-1m_seq_chrono.txt` (one
chronological line per user, no ratings or timestamps), with `movies.dat`
(`MovieID::Title::Genres`, Latin-1) and `users.dat`
(`UserID::Gender::Age::Occupation::Zip-code`). Every rating counts as an implicit
interaction. A behavior's fields (categorical ids >= 1; 0 is padding), each computed only
when named in `config.data.features`:

- `action`: the rating, 1..5 (ratings files only; the sequence file has none).
- `hour`, `weekday`: 1..24 and 1..7 (Monday = 1) of the ratings file's timestamp, in UTC.
- `category`: first listed genre + 1, from the `u.item` genre flags (1 = 'unknown', also
  when no flag is set) or the `movies.dat` Genres (1 = Action ... 18 = Western).
- `year`: release year, from the `u.item` release date (`01-Jan-1995`) or the `(1995)`
  ending a `movies.dat` Title: 1 = unknown (empty date), else
  `clip(year, 1920, 2029) - 1918`, i.e. 2..111 (one id per year; 1920 also stands for every
  earlier year), the same ids in both releases.
- `gender`: 1 = F, 2 = M, from `u.user` / `users.dat`.
- `age`: ML-1M's brackets, 1: under 18, 2: 18-24, 3: 25-34, 4: 35-44, 5: 45-49, 6: 50-55,
  7: 56+; the `u.user` age is bucketed, the `users.dat` Age code (1, 18, ..., 56) mapped.
- `occupation`: ML-100K: index + 1 of the `u.user` occupation name in `u.occupation`'s
  (alphabetical) list of 21, 1 = administrator ... 21 = writer; ML-1M: the `users.dat`
  Occupation code 0..20 + 1 (1 = "other or not specified"). The two vocabularies differ.

Item and user side files are read only when a field from them is requested. A malformed
line is an error naming file, line and field; so is a rating (or sequence) whose movie or
user is missing from its side file.
"""

from __future__ import annotations

import bisect
import dataclasses
import os
import re
from typing import Any, Callable

import numpy as np

from pmix_jax.data import sequence_files
from pmix_jax.data.readers import (check_range, lookup, parse_numbers, read_int_table,
                                   read_text, split_table)
from pmix_jax.data.sequences import InteractionLog, time_fields
from pmix_jax.errors import DataError

# --- Side files: a few thousand lines each, parsed line by line. ---------------------------

ML100K_GENRES = ('unknown', 'Action', 'Adventure', 'Animation', "Children's", 'Comedy',
                 'Crime', 'Documentary', 'Drama', 'Fantasy', 'Film-Noir', 'Horror', 'Musical',
                 'Mystery', 'Romance', 'Sci-Fi', 'Thriller', 'War', 'Western')  # u.genre.
NUM_GENRES = len(ML100K_GENRES)
ML1M_GENRES = ML100K_GENRES[1:]
ML100K_ITEM_FIELDS = ('movie id', 'movie title', 'release date', 'video release date',
                      'IMDb URL') + ML100K_GENRES
ML100K_ITEM_DESCRIBED = ', '.join(ML100K_ITEM_FIELDS[:5]) + f', {NUM_GENRES} genre flags'
ML100K_USER_FIELDS = ('user id', 'age', 'gender', 'occupation', 'zip code')
ML1M_MOVIE_FIELDS = ('MovieID', 'Title', 'Genres')
ML1M_USER_FIELDS = ('UserID', 'Gender', 'Age', 'Occupation', 'Zip-code')
ML100K_OCCUPATIONS = ('administrator', 'artist', 'doctor', 'educator', 'engineer',
                      'entertainment', 'executive', 'healthcare', 'homemaker', 'lawyer',
                      'librarian', 'marketing', 'none', 'other', 'programmer', 'retired',
                      'salesman', 'scientist', 'student', 'technician', 'writer')  # u.occupation.
ML1M_OCCUPATIONS = tuple(str(code) for code in range(21))
AGE_BRACKETS = (1, 18, 25, 35, 45, 50, 56)  # ML-1M's Age codes: lower bound of each bracket.
GENDERS = ('F', 'M')
MONTHS = ('Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec')
UNKNOWN_YEAR = 1
FIRST_YEAR, LAST_YEAR = 1920, 2029  # Earlier or later years share the id of the bound.
USER_FIELDS = ('gender', 'age', 'occupation')


def year_id(year: int) -> int:
  """A release year as a categorical id in 2..111 (1 is 'unknown')."""
  return min(max(year, FIRST_YEAR), LAST_YEAR) - FIRST_YEAR + 2


@dataclasses.dataclass(frozen=True)
class Record:
  """One line of a side file, for parsers whose errors name file, line and field."""
  path: str
  number: int
  fields: tuple[str, ...]
  values: list[str]

  def __getitem__(self, field: str) -> str:
    return self.values[self.fields.index(field)]

  def error(self, field: str, expected: str) -> DataError:
    return DataError(f'{self.path}:{self.number}: field {field!r} is {self[field]!r}, '
                     f'expected {expected}')

  def integer(self, field: str) -> int:
    value = self[field]
    if not (value.isascii() and value.isdigit()):
      raise self.error(field, 'an integer >= 0')
    return int(value)

  def choice(self, field: str, choices: tuple[str, ...]) -> int:
    """Index + 1 of the field's value in `choices`."""
    if self[field] not in choices:
      raise self.error(field, f'one of {", ".join(choices)}')
    return choices.index(self[field]) + 1


def read_side_file(path: str, separator: str, fields: tuple[str, ...],
                   parse: Callable[[Record], Any], described: str | None = None
                   ) -> dict[int, Any]:
  """Id (first field, unique) -> `parse(record)` for every line of a Latin-1 side file
  with exactly `len(fields)` fields (`described` names them in errors; default `fields`)."""
  table, lines = {}, {}
  for number, line in enumerate(read_text(path, encoding='latin-1').splitlines(), start=1):
    values = line.split(separator)
    if len(values) != len(fields):
      raise DataError(f'{path}:{number}: expected {len(fields)} {separator}-separated fields '
                      f'({described or ", ".join(fields)}), found {len(values)}: {line!r}')
    record = Record(path, number, fields, values)
    key = record.integer(fields[0])
    if key in lines:
      raise DataError(f'{path}:{number}: field {fields[0]!r} = {key} repeats line {lines[key]}')
    lines[key], table[key] = number, parse(record)
  return table


def columns(table: dict[int, tuple[int, ...]], names: tuple[str, ...]
            ) -> dict[str, dict[int, int]]:
  """`{id: (a, b)}` as `{name_a: {id: a}, name_b: {id: b}}`."""
  return {name: {key: row[i] for key, row in table.items()} for i, name in enumerate(names)}


def read_ml100k_genres(path: str) -> dict[int, int]:
  """Movie id -> first genre index + 1 (1 = 'unknown' genre, also when no flag is set)."""
  def first_genre(record):
    flags = [record.choice(genre, ('0', '1')) for genre in ML100K_GENRES]
    return int(np.argmax(flags)) + 1
  return read_side_file(path, '|', ML100K_ITEM_FIELDS, first_genre, ML100K_ITEM_DESCRIBED)


def read_ml100k_years(path: str) -> dict[int, int]:
  """Movie id -> `year_id` of the u.item release date (`01-Jan-1995`; empty: unknown)."""
  pattern = re.compile(r'\d{1,2}-(?:%s)-(\d{4})' % '|'.join(MONTHS))

  def release_year(record):
    if not record['release date']:
      return UNKNOWN_YEAR
    match = pattern.fullmatch(record['release date'])
    if not match:
      raise record.error('release date', 'a date like 01-Jan-1995, or empty')
    return year_id(int(match[1]))
  return read_side_file(path, '|', ML100K_ITEM_FIELDS, release_year, ML100K_ITEM_DESCRIBED)


def read_ml100k_users(path: str) -> dict[str, dict[int, int]]:
  """`gender`, `age` (bucketed into ML-1M's brackets) and `occupation` of each u.user id."""
  def user(record):
    age = bisect.bisect_right(AGE_BRACKETS[1:], record.integer('age')) + 1
    return (record.choice('gender', GENDERS), age,
            record.choice('occupation', ML100K_OCCUPATIONS))
  return columns(read_side_file(path, '|', ML100K_USER_FIELDS, user), USER_FIELDS)


def read_ml1m_genres(path: str) -> dict[int, int]:
  """Movie id -> index + 1 of its first listed genre, from `movies.dat` (Latin-1)."""
  def first_genre(record):
    first = record['Genres'].split('|')[0]
    if first not in ML1M_GENRES:
      raise record.error('Genres', f'|-separated genres from {", ".join(ML1M_GENRES)}')
    return ML1M_GENRES.index(first) + 1
  return read_side_file(path, '::', ML1M_MOVIE_FIELDS, first_genre)


def read_ml1m_years(path: str) -> dict[int, int]:
  """Movie id -> `year_id` of the year ending its `movies.dat` title (`Toy Story (1995)`)."""
  pattern = re.compile(r'\((\d{4})\)\s*$')

  def title_year(record):
    match = pattern.search(record['Title'])
    if not match:
      raise record.error('Title', 'a title ending in its release year, like Toy Story (1995)')
    return year_id(int(match[1]))
  return read_side_file(path, '::', ML1M_MOVIE_FIELDS, title_year)


def read_ml1m_users(path: str) -> dict[str, dict[int, int]]:
  """`gender`, `age` (Age code's bracket, 1..7) and `occupation` (code + 1) of each user."""
  def user(record):
    return (record.choice('Gender', GENDERS),
            record.choice('Age', tuple(str(age) for age in AGE_BRACKETS)),
            record.choice('Occupation', ML1M_OCCUPATIONS))
  return columns(read_side_file(path, '::', ML1M_USER_FIELDS, user), USER_FIELDS)


@dataclasses.dataclass(frozen=True)
class SideFiles:
  """A MovieLens release's movie and user files and their readers."""
  movies: str
  users: str
  read_genres: Callable[[str], dict[int, int]]
  read_years: Callable[[str], dict[int, int]]
  read_users: Callable[[str], dict[str, dict[int, int]]]


ML100K = SideFiles('u.item', 'u.user', read_ml100k_genres, read_ml100k_years,
                   read_ml100k_users)
ML1M = SideFiles('movies.dat', 'users.dat', read_ml1m_genres, read_ml1m_years,
                 read_ml1m_users)
SIDE_FIELDS = ('category', 'year') + USER_FIELDS


def side_fields(directory: str, files: SideFiles, features: tuple[str, ...],
                user: np.ndarray, item: np.ndarray, source: str | None = None
                ) -> dict[str, np.ndarray]:
  """The requested movie and user fields of every behavior; `source`, when given, holds
  one behavior per line (so that an error can name the line)."""
  fields = {}
  movies = os.path.join(directory, files.movies)
  if 'category' in features:
    fields['category'] = lookup(movies, files.read_genres(movies), item, 'item', 'genre',
                                source)
  if 'year' in features:
    fields['year'] = lookup(movies, files.read_years(movies), item, 'item', 'release year',
                            source)
  if any(name in features for name in USER_FIELDS):
    users = os.path.join(directory, files.users)
    tables = files.read_users(users)
    for name in USER_FIELDS:
      if name in features:
        fields[name] = lookup(users, tables[name], user, 'user', name, source)
  return fields


def check_features(source: str, features: tuple[str, ...], available: tuple[str, ...]):
  unknown = [name for name in features if name not in available]
  if unknown:
    raise DataError(f'{source}: feature field(s) {unknown} requested by config.data.features '
                    f'are not provided; available: {sorted(available)}')


# --- Ratings and sequences. ----------------------------------------------------------------

RATING_FIELDS = ('action', 'hour', 'weekday') + SIDE_FIELDS


def load_ml100k(directory: str, features: tuple[str, ...]) -> InteractionLog:
  if not directory:
    raise DataError('config.data.path must name the directory holding MovieLens-100K u.data')
  path = os.path.join(directory, 'u.data')
  table = read_int_table(path, ('user', 'item', 'rating', 'timestamp'), delimiter='\t')
  return ratings_log(path, table, features, directory, ML100K)


def ratings_log(path: str, table: dict[str, np.ndarray], features: tuple[str, ...],
                directory: str, files: SideFiles) -> InteractionLog:
  """Checks a MovieLens ratings table and adds its fields: rating as `action`, hour and
  weekday, and the requested movie and user fields from the side files in `directory`."""
  for field, low, high in [('user', 1, None), ('item', 1, None), ('rating', 1, 5),
                           ('timestamp', 0, None)]:
    check_range(path, table, field, low, high)
  check_features(path, features, RATING_FIELDS)
  fields = dict(action=table['rating'], **time_fields(table['timestamp']),
                **side_fields(directory, files, features, table['user'], table['item'], path))
  return InteractionLog(user=table['user'], item=table['item'], timestamp=table['timestamp'],
                        fields=fields, source=path)


def load_ml1m_sequences(directory: str, features: tuple[str, ...]) -> InteractionLog:
  """ML-1M as time-ordered sequences (`ml-1m_seq_chrono.txt`, no ratings or timestamps);
  `category` and `year` from `movies.dat`, the user fields from `users.dat`."""
  if not directory:
    raise DataError('config.data.path must name the directory holding ml-1m_seq_chrono.txt')
  path = os.path.join(directory, 'ml-1m_seq_chrono.txt')
  user, item, position = sequence_files.read_sequences(path)
  check_features(path, features, SIDE_FIELDS)
  return InteractionLog(user=user, item=item, timestamp=position,
                        fields=side_fields(directory, ML1M, features, user, item),
                        source=path)


def load_ml1m(directory: str, features: tuple[str, ...]) -> InteractionLog:
  """ML-1M raw: `ratings.dat` (`UserID::MovieID::Rating::Timestamp`), with `movies.dat` and
  `users.dat` for the side fields."""
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
  return ratings_log(path, table, features, directory, ML1M)
