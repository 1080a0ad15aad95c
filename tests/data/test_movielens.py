"""Tests of `pmix_jax.data.movielens` on small files in the raw GroupLens ML-100K and ML-1M
layouts, and on the real files when /work/shared/data holds them."""

import os

import numpy as np
import pytest

import pmix_jax.data
from configs import base
from pmix_jax.data import movielens
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


# user id | age | gender | occupation | zip code.
GOOD_USERS = ['1|24|M|technician|85711', '2|17|F|other|N2L3G']


def write(directory, data=None, items=None, users=None):
  """Writes u.data / u.item / u.user lines (None: file absent); returns the directory."""
  if data is not None:
    with open(directory / 'u.data', 'w', encoding='latin-1', newline='\n') as f:
      f.write(''.join(line + '\n' for line in data))
  if items is not None:
    with open(directory / 'u.item', 'w', encoding='latin-1', newline='\n') as f:
      f.write(''.join(line + '\n' for line in items))
  if users is not None:
    with open(directory / 'u.user', 'w', encoding='latin-1', newline='\n') as f:
      f.write(''.join(line + '\n' for line in users))
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


# --- Release year and user fields. ---------------------------------------------------------

ALL_FIELDS = ('action', 'hour', 'weekday', 'category', 'year', 'gender', 'age', 'occupation')


def test_year_and_user_fields_ml100k(tmp_path):
  """Year ids of 1995 / 1992 (year - 1918); user 1 (24, M, technician), user 2 (17, F,
  other): gender F = 1, M = 2; ages in brackets 18-24 = 2, under 18 = 1; occupations by
  their place in u.occupation (technician 20th, other 14th)."""
  log = load_ml100k(write(tmp_path, data_lines(GOOD_DATA), GOOD_ITEMS, GOOD_USERS),
                    ALL_FIELDS)
  assert set(log.fields) == set(ALL_FIELDS)
  np.testing.assert_array_equal(log.fields['year'], [77, 77, 77, 74])  # Items 10, 20, 10, 30.
  np.testing.assert_array_equal(log.fields['gender'], [2, 2, 1, 1])
  np.testing.assert_array_equal(log.fields['age'], [2, 2, 1, 1])
  np.testing.assert_array_equal(log.fields['occupation'], [20, 20, 14, 14])
  np.testing.assert_array_equal(log.fields['category'], [4, 1, 4, 19])


def test_unknown_and_clipped_release_years(tmp_path):
  """An empty release date is year 1 (unknown); a one-digit day parses; years before 1920
  share 1920's id 2, years after 2029 share 2029's id 111."""
  items = [
      f'10|unknown||||{genre_flags(0)}',
      f'20|Old (1911)|4-Feb-1911||http://us.imdb.com/y|{genre_flags()}',
      f'30|Late (2040)|31-Dec-2040||http://us.imdb.com/z|{genre_flags(18)}',
      f'40|Edge (1920)|01-Jan-1920||http://us.imdb.com/w|{genre_flags(1)}',
  ]
  years = movielens.read_ml100k_years(os.path.join(write(tmp_path, items=items), 'u.item'))
  assert years == {10: 1, 20: 2, 30: 111, 40: 2}
  assert movielens.year_id(1921) == 3 and movielens.year_id(2029) == 111


def test_age_brackets_ml100k(tmp_path):
  """u.user ages fall into ML-1M's brackets: <18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+."""
  ages = [0, 17, 18, 24, 25, 34, 35, 44, 45, 49, 50, 55, 56, 73]
  users = [f'{i}|{age}|M|student|00000' for i, age in enumerate(ages, start=1)]
  tables = movielens.read_ml100k_users(os.path.join(write(tmp_path, users=users), 'u.user'))
  assert list(tables['age'].values()) == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7]
  assert set(tables['occupation'].values()) == {19}  # student.


def test_side_files_read_only_when_needed(tmp_path):
  """`year` needs u.item but not u.user; the user fields need u.user but not u.item."""
  (tmp_path / 'items').mkdir()
  (tmp_path / 'users').mkdir()
  directory = write(tmp_path / 'items', data_lines(GOOD_DATA), GOOD_ITEMS)
  assert set(load_ml100k(directory, ('year',)).fields) == {'action', 'hour', 'weekday',
                                                           'year'}
  directory = write(tmp_path / 'users', data_lines(GOOD_DATA), users=GOOD_USERS)
  assert 'gender' in load_ml100k(directory, ('age', 'gender')).fields
  message = load_error(directory, ('year',))
  assert message == f'{os.path.join(directory, "u.item")}: file not found'


def test_missing_user_file(tmp_path):
  message = load_error(write(tmp_path, data_lines(GOOD_DATA), GOOD_ITEMS), ('occupation',))
  assert message == f'{os.path.join(str(tmp_path), "u.user")}: file not found'


def test_user_missing_from_user_file(tmp_path):
  """A u.data user absent from u.user names the u.data line, the field and u.user."""
  directory = write(tmp_path, data_lines(GOOD_DATA), GOOD_ITEMS, GOOD_USERS[:1])
  message = load_error(directory, ('gender',))
  assert message.startswith(f'{os.path.join(directory, "u.data")}:3:')
  assert "'user' = 2 has no gender" in message and os.path.join(directory, 'u.user') in message


def test_unknown_feature_name(tmp_path):
  message = load_error(write(tmp_path, data_lines(GOOD_DATA), GOOD_ITEMS), ('genre',))
  assert "['genre']" in message and "'occupation'" in message and "'year'" in message


@pytest.mark.parametrize('line, field', [
    ('2|53|F|other', 'expected 5 |-separated fields (user id, age, gender, occupation, zip'),
    ('2|fifty|F|other|94043', "field 'age' is 'fifty', expected an integer"),
    ('2|53|female|other|94043', "field 'gender' is 'female', expected one of F, M"),
    ('2|53|F|pilot|94043', "field 'occupation' is 'pilot', expected one of administrator"),
    ('x|53|F|other|94043', "field 'user id' is 'x'"),
    ('1|53|F|other|94043', "field 'user id' = 1 repeats line 1"),
])
def test_malformed_user_line(tmp_path, line, field):
  directory = write(tmp_path, data_lines(GOOD_DATA), GOOD_ITEMS, [GOOD_USERS[0], line])
  message = load_error(directory, ('age',))
  assert message.startswith(f'{os.path.join(directory, "u.user")}:2: ') and field in message


@pytest.mark.parametrize('date', ['Jan-01-1995', '01-Foo-1995', '1995', '01-Jan-95'])
def test_malformed_release_date(tmp_path, date):
  items = list(GOOD_ITEMS)
  items[2] = f'30|Unforgiven (1992)|{date}||http://us.imdb.com/z|{genre_flags(18)}'
  directory = write(tmp_path, data_lines(GOOD_DATA), items)
  message = load_error(directory, ('year',))
  assert message.startswith(f'{os.path.join(directory, "u.item")}:3: ')
  assert f"field 'release date' is {date!r}, expected a date like 01-Jan-1995" in message


def test_malformed_genre_flag(tmp_path):
  items = list(GOOD_ITEMS)
  items[0] = items[0][:-1] + '2'  # The last flag (Western).
  message = load_error(write(tmp_path, data_lines(GOOD_DATA), items), ('category',))
  assert message.startswith(f'{os.path.join(str(tmp_path), "u.item")}:1: ')
  assert "field 'Western' is '2', expected one of 0, 1" in message


# ML-1M: `movies.dat` (MovieID::Title::Genres) and `users.dat`
# (UserID::Gender::Age::Occupation::Zip-code), as published.
ML1M_MOVIES = ['1193::One Flew Over the Cuckoo\'s Nest (1975)::Drama',
               '661::James and the Giant Peach (1996)::Animation|Children\'s|Musical',
               "3280::Associate, The (L'Associe)(1982)::Comedy",
               '3::Caf\xe9 (1919)::Comedy|Romance']
ML1M_USERS = ['1::F::1::10::48067', '2::M::56::16::70072', '5::M::25::20::55455']


def write_ml1m(directory, ratings=None, sequences=None, movies=ML1M_MOVIES,
               users=ML1M_USERS):
  for name, lines in [('ratings.dat', ratings), ('ml-1m_seq_chrono.txt', sequences),
                      ('movies.dat', movies), ('users.dat', users)]:
    if lines is not None:
      with open(directory / name, 'w', encoding='latin-1', newline='\n') as f:
        f.write(''.join(line + '\n' for line in lines))
  return str(directory)


def test_ml1m_ratings_year_and_user_fields(tmp_path):
  """Years from the title (also without a space before it, and 1919 clipped to 1920's id);
  Age codes 1 / 56 / 25 -> brackets 1 / 7 / 3; Occupation code + 1."""
  directory = write_ml1m(tmp_path, ratings=['1::1193::5::978300760', '1::661::3::978302109',
                                            '2::3280::4::978298413', '5::3::2::978298000'])
  log = movielens.load_ml1m(directory, ALL_FIELDS)
  np.testing.assert_array_equal(log.fields['year'], [57, 78, 64, 2])
  np.testing.assert_array_equal(log.fields['category'], [8, 3, 5, 5])
  np.testing.assert_array_equal(log.fields['gender'], [1, 1, 2, 2])
  np.testing.assert_array_equal(log.fields['age'], [1, 1, 7, 3])
  np.testing.assert_array_equal(log.fields['occupation'], [11, 11, 17, 21])


def test_ml1m_sequences_year_and_user_fields(tmp_path):
  directory = write_ml1m(tmp_path, sequences=['1 1193 661', '5 3'])
  log = movielens.load_ml1m_sequences(directory, ('year', 'gender', 'age', 'occupation'))
  np.testing.assert_array_equal(log.fields['year'], [57, 78, 2])
  np.testing.assert_array_equal(log.fields['gender'], [1, 1, 2])
  np.testing.assert_array_equal(log.fields['age'], [1, 1, 3])
  np.testing.assert_array_equal(log.fields['occupation'], [11, 11, 21])
  assert 'category' not in log.fields


def test_ml1m_sequences_user_missing_from_users_file(tmp_path):
  directory = write_ml1m(tmp_path, sequences=['1 1193', '7 661'])
  with pytest.raises(DataError) as error:
    movielens.load_ml1m_sequences(directory, ('gender',))
  assert str(error.value) == f'{os.path.join(directory, "users.dat")}: user 7 has no gender'


def test_ml1m_rating_user_missing_from_users_file(tmp_path):
  directory = write_ml1m(tmp_path, ratings=['1::1193::5::978300760', '9::661::3::978302109'])
  with pytest.raises(DataError) as error:
    movielens.load_ml1m(directory, ('age',))
  message = str(error.value)
  assert message.startswith(f'{os.path.join(directory, "ratings.dat")}:2: ')
  assert "'user' = 9 has no age" in message


@pytest.mark.parametrize('name, line, field', [
    ('movies.dat', '5::Father of the Bride Part II::Comedy',
     "field 'Title' is 'Father of the Bride Part II', expected a title ending in its release"),
    ('movies.dat', '5::Father of the Bride Part II (1995)', 'expected 3 ::-separated fields'),
    ('users.dat', '6::F::20::9::55117', "field 'Age' is '20', expected one of 1, 18, 25"),
    ('users.dat', '6::F::25::21::55117', "field 'Occupation' is '21', expected one of 0, 1"),
    ('users.dat', '6::X::25::9::55117', "field 'Gender' is 'X', expected one of F, M"),
    ('users.dat', '6::F::25::9', 'expected 5 ::-separated fields (UserID, Gender, Age'),
])
def test_ml1m_malformed_side_line(tmp_path, name, line, field):
  files = dict(movies=ML1M_MOVIES[:1] + [line], users=ML1M_USERS[:1] + [line])
  directory = write_ml1m(tmp_path, sequences=['1 1193'],
                         **{key: value for key, value in files.items()
                            if name.startswith(key)})
  with pytest.raises(DataError) as error:
    movielens.load_ml1m_sequences(directory, ('year', 'age'))
  message = str(error.value)
  assert message.startswith(f'{os.path.join(directory, name)}:2: ') and field in message


# --- The real files. ------------------------------------------------------------------------

def test_real_ml100k_all_fields(shared_data):
  """Every field of the real ML-100K loads, >= 1, with the expected vocabularies."""
  config = base.get_config().data
  config.update(dict(name='ml-100k', path=os.path.join(shared_data, 'ml-100k'),
                     features=ALL_FIELDS, cache_dir=''))
  data = pmix_jax.data.load(config)
  assert data.field_names == ('item',) + ALL_FIELDS
  assert (data.behaviors[1:] >= 1).all()
  distinct = {name: len(np.unique(data.behaviors[1:, i]))
              for i, name in enumerate(data.field_names)}
  assert distinct['gender'] == 2 and distinct['age'] == 7 and distinct['occupation'] == 21
  assert distinct['category'] == 19
  # Years 1922..1998 (1995 -> 77) and the one movie without a date (267, 'unknown').
  assert data.vocab_sizes[data.field_names.index('year')] == 1998 - 1918 + 1
  years = movielens.read_ml100k_years(os.path.join(shared_data, 'ml-100k', 'u.item'))
  assert years[1] == 77 and years[267] == 1 and sum(y == 1 for y in years.values()) == 1
  users = movielens.read_ml100k_users(os.path.join(shared_data, 'ml-100k', 'u.user'))
  # u.user line 1: '1|24|M|technician|85711'; line 2: '2|53|F|other|94043'.
  assert [users[f][1] for f in movielens.USER_FIELDS] == [2, 2, 20]
  assert [users[f][2] for f in movielens.USER_FIELDS] == [1, 6, 14]


def test_real_ml1m_all_fields(shared_data):
  """The real ML-1M with every side field: raw ratings.dat when present, else the
  sequence file (the shared copy has only the latter)."""
  directory = os.path.join(shared_data, 'ml-1m')
  if os.path.isfile(os.path.join(directory, 'ratings.dat')):
    log, fields = movielens.load_ml1m(directory, ALL_FIELDS), ALL_FIELDS
  else:
    fields = movielens.SIDE_FIELDS
    log = movielens.load_ml1m_sequences(directory, fields)
  assert len(log.user) == 1_000_209 and set(log.fields) >= set(fields)
  for name in fields:
    assert log.fields[name].min() >= 1, name
  assert len(np.unique(log.fields['gender'])) == 2
  assert len(np.unique(log.fields['age'])) == 7
  assert len(np.unique(log.fields['occupation'])) == 21
  assert len(np.unique(log.fields['category'])) == 18
  years = log.fields['year']
  assert years.max() == 2000 - 1918 and years.min() == 2  # 1919 shares 1920's id.
  # users.dat line 1 '1::F::1::10::48067'; movies.dat line 1 'Toy Story (1995)'.
  first = log.user == 1
  assert set(log.fields['gender'][first]) == {1} and set(log.fields['age'][first]) == {1}
  assert set(log.fields['occupation'][first]) == {11}
  assert set(log.fields['year'][log.item == 1]) == {77}
