"""ML-1M raw ratings, Amazon ratings CSV and generic tables, in their published layouts."""

import os

import numpy as np
import pytest

from configs import base
from pmix_jax import data
from pmix_jax.data import movielens, tabular
from pmix_jax.errors import DataError

MOVIES = ("1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
          '661::James (1996)::Animation|Musical\n')


def _write(directory, name, text, encoding='utf-8'):
  path = os.path.join(str(directory), name)
  with open(path, 'wb') as f:
    f.write(text.encode(encoding))
  return path


def test_ml1m_ratings_and_genres(tmp_path):
  _write(tmp_path, 'ratings.dat', '1::1193::5::978300760\n1::661::3::978302109\n'
                                  '2::1193::4::978298413\n')
  _write(tmp_path, 'movies.dat', MOVIES, 'latin-1')
  log = movielens.load_ml1m(str(tmp_path), ('category',))
  np.testing.assert_array_equal(log.item, [1193, 661, 1193])
  np.testing.assert_array_equal(log.fields['action'], [5, 3, 4])
  np.testing.assert_array_equal(log.fields['category'], [8, 3, 8])  # Drama, Animation.


@pytest.mark.parametrize('line, message', [
    ('1:1193::3::978302109', "expected 4 fields (user, item, rating, timestamp), found 3: "
                             "'1:1193::3::978302109'"),
    ('x1::1193::3::978302109', "field 'user' is not an integer"),
    ('1::1193::3', 'expected 4 fields'),
    ('1::1193::9::978302109', "field 'rating' = 9 is outside [1, 5]"),
])
def test_ml1m_errors_name_line_and_field(tmp_path, line, message):
  path = _write(tmp_path, 'ratings.dat', f'1::1193::5::978300760\n{line}\n')
  with pytest.raises(DataError) as error:
    movielens.load_ml1m(str(tmp_path), ())
  assert str(error.value).startswith(f'{path}:2:') and message in str(error.value)


def test_amazon_ratings_csv_with_string_ids(tmp_path):
  path = _write(tmp_path, 'ratings_Beauty.csv',
                'A39HTATAQ9V7YF,0205616461,5.0,1369699200\n'
                'A3JM6GV9MNOF9X,0558925278,3.0,1355443200\n'
                'A39HTATAQ9V7YF,0558925278,4.0,1355443200\n')
  config = base.get_config().data
  config.update(dict(name='amazon-ratings', path=path, features=('action',)))
  sequences = data.load(config)
  assert sequences.num_users == 2 and sequences.num_items == 2
  np.testing.assert_array_equal(sequences.item_ids, ['0205616461', '0558925278'])
  # User A39... in time order: 0558925278 (1355443200) before 0205616461 (1369699200).
  first = sequences.user_start[0]
  np.testing.assert_array_equal(sequences.behaviors[first:first + 2], [[2, 4], [1, 5]])


def test_amazon_bad_rating_names_line(tmp_path):
  path = _write(tmp_path, 'r.csv', 'A,1,5.0,10\nB,2,good,11\n')
  with pytest.raises(DataError, match=r"r.csv:2: field 'rating' is not a number"):
    tabular.load_amazon_ratings(path, ())


def test_generic_table_roles_and_categorical_features(tmp_path):
  path = _write(tmp_path, 'log.tsv', 'uid\tsku\tts\tdevice\nu1\tx\t5\tios\nu1\ty\t3\tweb\n'
                                     'u2\tx\t4\tios\n')
  config = base.get_config().data
  config.update(dict(name='table', path=path, features=('device',)))
  config.table.update(dict(delimiter='\t', user='uid', item='sku', timestamp='ts'))
  log = data.DATASETS['table'](config)
  np.testing.assert_array_equal(log.fields['device'], [1, 2, 1])
  sequences = data.load(config)
  assert sequences.field_names == ('item', 'device')


def test_generic_table_errors(tmp_path):
  config = base.get_config().data
  config.update(dict(name='table', features=()))
  config.path = _write(tmp_path, 'a.csv', 'user,item,timestamp\nu1,x,1\n')
  with pytest.raises(DataError, match=r"a.csv:1: no column 'user_id' \(the user column\)"):
    data.load(config)
  config.table.update(dict(user='user', item='item'))
  config.path = _write(tmp_path, 'b.csv', 'user,item,timestamp\nu1,"x, y",1\n')
  with pytest.raises(DataError, match=r'b.csv:2: quoted fields are not supported'):
    data.load(config)


def _parquet_config(path):
  config = base.get_config().data
  config.update(dict(name='table', path=path, features=('action', 'device')))
  config.table.update(dict(user='uid', item='sku', timestamp='ts', rating='stars'))
  return config


def test_parquet_log_matches_the_same_log_as_csv(tmp_path):
  pa = pytest.importorskip('pyarrow', reason='Parquet needs the optional extra '
                                             '(pip install -r requirements-extras.txt)')
  pq = pytest.importorskip('pyarrow.parquet')
  rows = [('u1', 'x', 50, 4.0, 'ios'), ('u2', 'y', 10, 2.0, 'web'), ('u1', 'y', 20, 5.0, 'web'),
          ('u1', 'z', 90000, 1.0, 'ios'), ('u2', 'x', 30, 3.0, 'ios')]
  names = ('uid', 'sku', 'ts', 'stars', 'device')
  csv = _write(tmp_path, 'log.csv', ','.join(names) + '\n' +
               ''.join(','.join(map(str, row)) + '\n' for row in rows))
  columns = dict(zip(names, map(list, zip(*rows))))
  # The timestamp as a Parquet timestamp column, the user as a dictionary column.
  columns['ts'] = pa.array([t * 1_000_000 for t in columns['ts']], pa.timestamp('us'))
  columns['uid'] = pa.array(columns['uid']).dictionary_encode()
  parquet = os.path.join(tmp_path, 'log.parquet')
  pq.write_table(pa.table(columns), parquet)
  from_csv, from_parquet = data.load(_parquet_config(csv)), data.load(_parquet_config(parquet))
  np.testing.assert_array_equal(from_parquet.behaviors, from_csv.behaviors)
  np.testing.assert_array_equal(from_parquet.user_ids, ['u1', 'u2'])
  np.testing.assert_array_equal(from_parquet.item_ids, ['x', 'y', 'z'])
  log = data.DATASETS['table'](_parquet_config(parquet))
  np.testing.assert_array_equal(log.fields['action'], [4, 2, 5, 1, 3])
  np.testing.assert_array_equal(log.fields['hour'], [1, 1, 1, 2, 1])  # 90000 s is 01:00.


def test_parquet_errors_name_row_and_field(tmp_path):
  pa = pytest.importorskip('pyarrow', reason='Parquet needs the optional extra '
                                             '(pip install -r requirements-extras.txt)')
  pq = pytest.importorskip('pyarrow.parquet')
  path = os.path.join(tmp_path, 'log.parquet')
  pq.write_table(pa.table(dict(uid=['a', None], sku=['x', 'y'], ts=[1, 2], stars=[5, 4],
                               device=['ios', 'web'])), path)
  with pytest.raises(DataError, match=r"log.parquet:2: field 'uid' is null"):
    data.load(_parquet_config(path))
  pq.write_table(pa.table(dict(uid=['a'], sku=['x'], ts=[1], stars=[0], device=['ios'])), path)
  with pytest.raises(DataError, match=r"log.parquet:1: field 'stars' must be >= 1"):
    data.load(_parquet_config(path))
  pq.write_table(pa.table(dict(user=['a'], sku=['x'], ts=[1], stars=[5])), path)
  with pytest.raises(DataError, match=r"log.parquet: no column 'uid' \(the user column\)"):
    data.load(_parquet_config(path))
  bad = _write(tmp_path, 'bad.parquet', 'uid,sku\n')
  with pytest.raises(DataError, match=r'bad.parquet: not a readable Parquet file'):
    data.load(_parquet_config(bad))
