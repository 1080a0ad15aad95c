"""Tests of `pmix_jax.data.movielens` on small files in the raw GroupLens ML-100K layout."""

import os

import numpy as np
import pytest

import pmix_jax.data
from configs import base
from pmix_jax.data.movielens import load_ml100k
from pmix_jax.errors import DataError

REAL_ML100K = os.path.normpath(os.path.join(
    os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'shared', 'data', 'ml-100k'))

FEATURES = ('action', 'category')

# user, item, rating, timestamp.
GOOD_DATA = [
    (1, 10, 5, 881250949),
    (1, 20, 3, 881250950),
    (2, 10, 4, 0),
    (2, 30, 1, 881250952),
]


def genre_flags(*set_genres):
  return '|'.join('1' if g in set_genres else '0' for g in range(19))


# Item 10: genres 3 and 4 set -> first is 3 -> category 4. Item 20: no flag -> 1 ('unknown').
# Item 30: only genre 18 (Western) -> 19. Titles carry a Latin-1 byte (\xe9), invalid UTF-8.
GOOD_ITEMS = [
    f'10|Caf\xe9 Story (1995)|01-Jan-1995||http://us.imdb.com/x|{genre_flags(3, 4)}',
    f'20|Les Mis\xe9rables (1995)|01-Jan-1995||http://us.imdb.com/y|{genre_flags()}',
    f'30|Unforgiven (1992)|01-Jan-1992||http://us.imdb.com/z|{genre_flags(18)}',
]


def data_lines(rows):
  return ['\t'.join(str(v) for v in row) for row in rows]


def write(directory, data=None, items=None):
  """Writes u.data / u.item lines (None: file absent) and returns the directory."""
  if data is not None:
    with open(directory / 'u.data', 'w', encoding='latin-1', newline='\n') as f:
      f.write(''.join(line + '\n' for line in data))
  if items is not None:
    with open(directory / 'u.item', 'w', encoding='latin-1', newline='\n') as f:
      f.write(''.join(line + '\n' for line in items))
  return str(directory)


def load_error(directory, features=FEATURES):
  with pytest.raises(DataError) as info:
    load_ml100k(directory, features)
  return str(info.value)


def test_good_files_load(tmp_path):
  """Action is the rating, category the first genre + 1, time fields from the timestamp."""
  log = load_ml100k(write(tmp_path, data_lines(GOOD_DATA), GOOD_ITEMS), FEATURES)
  np.testing.assert_array_equal(log.user, [1, 1, 2, 2])
  np.testing.assert_array_equal(log.item, [10, 20, 10, 30])
  np.testing.assert_array_equal(log.timestamp, [881250949, 881250950, 0, 881250952])
  np.testing.assert_array_equal(log.fields['action'], [5, 3, 4, 1])
  np.testing.assert_array_equal(log.fields['category'], [4, 1, 4, 19])
  assert log.fields['hour'][2] == 1 and log.fields['weekday'][2] == 4  # 1970-01-01 00:00, Thu.
  assert set(log.fields) == {'action', 'category', 'hour', 'weekday'}
  assert log.source == os.path.join(str(tmp_path), 'u.data')


def test_item_file_not_needed_without_category(tmp_path):
  """Without the category feature u.item is not read."""
  log = load_ml100k(write(tmp_path, data_lines(GOOD_DATA)), ('action',))
  assert 'category' not in log.fields
  np.testing.assert_array_equal(log.fields['action'], [5, 3, 4, 1])


def test_wrong_column_count(tmp_path):
  """A line with 3 columns is reported with its file, line number and expected fields."""
  lines = data_lines(GOOD_DATA)
  lines[2] = '2\t10\t4'
  message = load_error(write(tmp_path, lines, GOOD_ITEMS))
  path = os.path.join(str(tmp_path), 'u.data')
  assert message.startswith(f'{path}:3:')
  assert 'timestamp' in message and 'found 3' in message


def test_compensating_column_counts_are_an_error(tmp_path):
  """A short line followed by a long one is an error, not silently realigned.

  Line 3 lacks its timestamp and line 4 has one field too many, so the total number of
  fields is still a multiple of 4; all realigned values would pass the range checks.
  """
  lines = data_lines(GOOD_DATA)
  lines[2] = '2\t3\t4'
  lines[3] = '1\t2\t3\t4\t5'
  message = load_error(write(tmp_path, lines), ('action',))
  assert message.startswith(f'{os.path.join(str(tmp_path), "u.data")}:3:')


def test_non_integer_rating(tmp_path):
  """A non-integer rating names file, line and the field 'rating'."""
  lines = data_lines(GOOD_DATA)
  lines[1] = '1\t20\tfive\t881250950'
  message = load_error(write(tmp_path, lines, GOOD_ITEMS))
  path = os.path.join(str(tmp_path), 'u.data')
  assert message.startswith(f'{path}:2:')
  assert "'rating'" in message and "'five'" in message


def test_rating_out_of_range(tmp_path):
  """Rating 7 names file, line, field and the allowed range."""
  rows = list(GOOD_DATA)
  rows[3] = (2, 30, 7, 881250952)
  message = load_error(write(tmp_path, data_lines(rows), GOOD_ITEMS))
  path = os.path.join(str(tmp_path), 'u.data')
  assert message.startswith(f'{path}:4:')
  assert "'rating'" in message and '7' in message and '[1, 5]' in message


def test_integer_overflow_is_a_data_error(tmp_path):
  """A timestamp too large for int64 is a DataError naming file, line and field."""
  lines = data_lines(GOOD_DATA)
  lines[1] = '1\t20\t3\t99999999999999999999'
  message = load_error(write(tmp_path, lines, GOOD_ITEMS))
  path = os.path.join(str(tmp_path), 'u.data')
  assert message.startswith(f'{path}:2:')
  assert "'timestamp'" in message


def test_empty_file(tmp_path):
  """An empty (whitespace-only) u.data names the file."""
  message = load_error(write(tmp_path, ['', '  '], GOOD_ITEMS))
  assert message == f'{os.path.join(str(tmp_path), "u.data")}: file is empty'


def test_missing_file(tmp_path):
  """A directory without u.data names the missing file."""
  message = load_error(write(tmp_path, items=GOOD_ITEMS))
  assert message == f'{os.path.join(str(tmp_path), "u.data")}: file not found'


def test_missing_directory_config():
  """An empty path names the config key to set."""
  message = load_error('')
  assert 'config.data.path' in message and 'u.data' in message


def test_item_missing_from_item_file(tmp_path):
  """An item of u.data absent from u.item names the u.data line, the field and u.item."""
  rows = list(GOOD_DATA)
  rows[2] = (2, 40, 4, 0)
  message = load_error(write(tmp_path, data_lines(rows), GOOD_ITEMS))
  path = os.path.join(str(tmp_path), 'u.data')
  assert message.startswith(f'{path}:3:')
  assert "'item' = 40" in message
  assert os.path.join(str(tmp_path), 'u.item') in message


def test_item_file_wrong_field_count(tmp_path):
  """A u.item line with too few |-fields names u.item and the line."""
  items = list(GOOD_ITEMS)
  items[1] = '20|Les Mis\xe9rables (1995)|01-Jan-1995||http://us.imdb.com/y'
  message = load_error(write(tmp_path, data_lines(GOOD_DATA), items))
  assert message.startswith(f'{os.path.join(str(tmp_path), "u.item")}:2:')
  assert '24' in message


def test_missing_item_file_with_category(tmp_path):
  """The category feature without u.item names the missing file."""
  message = load_error(write(tmp_path, data_lines(GOOD_DATA)))
  assert message == f'{os.path.join(str(tmp_path), "u.item")}: file not found'


@pytest.mark.skipif(not os.path.isdir(REAL_ML100K),
                    reason=f'real MovieLens-100K not found at {REAL_ML100K}')
def test_real_ml100k():
  """The real dataset has 943 users, 1682 items and 100000 ratings."""
  config = base.get_config().data
  config.name = 'ml-100k'
  config.path = REAL_ML100K
  data = pmix_jax.data.load(config)
  stats = data.stats()
  assert stats['users'] == 943
  assert stats['items'] == 1682
  assert stats['interactions'] == 100000
  assert stats['users_train_only'] == 0
  assert data.field_names == ('item', 'action', 'category')
  assert data.vocab_sizes == (1683, 6, 20)
