"""One-line-per-user sequence files, item attributes, RecBole atomic files: parsing and errors."""

import os

import numpy as np
import pytest

from pmix_jax.data import recbole, sequence_files
from pmix_jax.errors import DataError


def _write(tmp_path, name, text, encoding='utf-8'):
  path = tmp_path / name
  path.write_bytes(text.encode(encoding))
  return str(path)


def test_sequence_file_with_attributes(tmp_path):
  path = _write(tmp_path, 'Shop.txt', '1 10 11 12\n2 11 10\n')
  _write(tmp_path, 'Shop_item2attributes.json', '{"10": [3, 4], "11": [0], "12": [7]}')
  log = sequence_files.load_sequence_file(path, ('category',))
  np.testing.assert_array_equal(log.user, [1, 1, 1, 2, 2])
  np.testing.assert_array_equal(log.item, [10, 11, 12, 11, 10])
  np.testing.assert_array_equal(log.timestamp, [0, 1, 2, 0, 1])  # Position is time.
  np.testing.assert_array_equal(log.fields['category'], [4, 1, 8, 1, 4])  # First + 1.


@pytest.mark.parametrize('text, line, field', [
    ('1 10 11\n2 x 10\n', 2, "'item 1'"),
    ('1 10 11\nu 10\n', 2, "'user'"),
    ('1 10 11\n3\n', 2, 'at least one item'),
    ('1 10\n\n2 10\n', 2, 'at least one item'),
])
def test_sequence_file_errors_name_line_and_field(tmp_path, text, line, field):
  path = _write(tmp_path, 'Shop.txt', text)
  with pytest.raises(DataError) as error:
    sequence_files.load_sequence_file(path, ())
  assert str(error.value).startswith(f'{path}:{line}:') and field in str(error.value)


def test_item_without_attributes_is_named(tmp_path):
  path = _write(tmp_path, 'Shop.txt', '1 10 11\n')
  _write(tmp_path, 'Shop_item2attributes.json', '{"10": [3]}')
  with pytest.raises(DataError, match='item 11 has no attributes'):
    sequence_files.load_sequence_file(path, ('category',))


INTER = ('user_id:token\titem_id:token\trating:float\ttimestamp:float\n'
         'u1\ta\t4\t300\nu1\tb\t5\t100\nu2\ta\t3\t200\n')


def test_recbole_inter_and_item_files(tmp_path):
  path = _write(tmp_path, 'shop.inter', INTER)
  _write(tmp_path, 'shop.item', 'item_id:token\tclass:token_seq\na\tDrama Comedy\nb\tAction\n')
  log = recbole.load_recbole(path, ('action', 'category'))
  np.testing.assert_array_equal(log.user, ['u1', 'u1', 'u2'])
  np.testing.assert_array_equal(log.fields['action'], [4, 5, 3])
  np.testing.assert_array_equal(log.timestamp, [300, 100, 200])
  np.testing.assert_array_equal(log.fields['category'], [2, 1, 2])  # Action=1, Drama=2.


def test_recbole_item_and_user_side_features(tmp_path):
  path = _write(tmp_path, 'shop.inter', INTER)
  _write(tmp_path, 'shop.item', 'item_id:token\trelease_year:token\tclass:token_seq\n'
                                'b\t1999\tAction\na\t1995\tDrama Comedy\n')
  _write(tmp_path, 'shop.user', 'user_id:token\tage:token\tgender:token\n'
                                'u2\t53\tF\nu1\t24\tM\n')
  log = recbole.load_recbole(path, ('year', 'gender', 'age'))
  np.testing.assert_array_equal(log.fields['year'], [1, 2, 1])  # a: 1995, b: 1999.
  np.testing.assert_array_equal(log.fields['gender'], [2, 2, 1])  # F = 1, M = 2.
  np.testing.assert_array_equal(log.fields['age'], [1, 1, 2])
  with pytest.raises(DataError, match=r"no column 'zip' for the feature 'zip'"):
    recbole.load_recbole(path, ('zip',))
  _write(tmp_path, 'shop.user', 'user_id:token\tgender:token\nu1\tM\n')
  with pytest.raises(DataError, match=r"shop.inter:4: field 'user_id' = 'u2' is not in "
                                      r'.*shop.user'):
    recbole.load_recbole(path, ('gender',))


def test_recbole_ml100k_side_features(shared_data):
  path = os.path.join(shared_data, 'ml-100k-recbole', 'ml-100k.inter')
  log = recbole.load_recbole(path, ('category', 'year', 'gender', 'age', 'occupation'))
  assert len(np.unique(log.fields['gender'])) == 2
  assert len(np.unique(log.fields['occupation'])) == 21
  assert all(values.min() >= 1 for values in log.fields.values())


@pytest.mark.parametrize('text, message', [
    (INTER.replace('rating:float', 'rating'), ":1: header field 'rating'"),
    (INTER.replace('u2\ta\t3\t200', 'u2\ta\t3'), ':4: expected 4 fields'),
    (INTER.replace('\t5\t', '\tfive\t'), ":3: field 'rating' is not a number"),
    (INTER.replace('user_id:token', 'uid:token'), ":1: header has no 'user_id' column"),
])
def test_recbole_errors_name_line_and_field(tmp_path, text, message):
  path = _write(tmp_path, 'shop.inter', text)
  with pytest.raises(DataError) as error:
    recbole.load_recbole(path, ('action',))
  assert str(error.value).startswith(path) and message in str(error.value)
