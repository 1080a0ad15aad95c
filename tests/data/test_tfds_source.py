"""Tests of `pmix_jax.data.tfds_source`, offline and without TensorFlow.

Examples are served by `tfds.testing.mock_data` (`MockPolicy.USE_CODE`, with our own examples
through `as_data_source_fn`, both already decoded and as serialized `tf.train.Example`s) and by
a tiny `array_record` dataset that TFDS itself prepares in `tmp_path` from a patched generator,
so the real `tfds.data_source` path (batched reads of raw records) is covered too.
"""

import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

tfds = pytest.importorskip(
    'tensorflow_datasets',
    reason='the optional extra tensorflow_datasets is not installed '
           '(pip install -r requirements-extras.txt)')

from tensorflow_datasets.proto import tf_example_pb2  # pylint: disable=wrong-import-position
from tensorflow_datasets.structured import movielens  # pylint: disable=wrong-import-position

from pmix_jax.data import sequences, tfds_source  # pylint: disable=wrong-import-position
from pmix_jax.errors import DataError  # pylint: disable=wrong-import-position

NAMES = ('movielens/100k-ratings', 'movielens/1m-ratings')
ALL_FEATURES = ('action', 'category', 'gender', 'age', 'occupation')

# The TFDS features this module reads; the others get fixed values in `full_example`.
EXAMPLES = [
    dict(user_id='7', movie_id='12', movie_genres=['Drama', 'Action'], user_rating=4.0,
         timestamp=881250949, user_gender=True, bucketized_user_age=25.0,
         user_occupation_label='writer'),
    dict(user_id='7', movie_id='3', movie_genres=[], user_rating=1.0, timestamp=0,
         user_gender=True, bucketized_user_age=25.0, user_occupation_label='writer'),
    dict(user_id='42', movie_id='12', movie_genres=['Western'], user_rating=4.6,
         timestamp=893286638, user_gender=False, bucketized_user_age=1.0,
         user_occupation_label='academic/educator'),
    dict(user_id='1000', movie_id='200', movie_genres=['(no genres listed)', 'IMAX'],
         user_rating=2.0, timestamp=956703932, user_gender=False, bucketized_user_age=56.0,
         user_occupation_label='artist'),
]


@pytest.fixture(autouse=True)
def _tfds_temp_dirs_out_of_tmp(tmp_path_factory, monkeypatch):
  """TFDS makes an empty `tmp*tfds` directory, and never removes it, each time a builder
  is made for a dataset that is not prepared (`DatasetInfo.initialize_from_bucket` creates
  it before looking for files on GCS): keep them under pytest's temporary root, which it
  prunes, not in /tmp."""
  monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path_factory.mktemp('tfds_leaked')))


def builder_features(name):
  return tfds.builder(name, data_dir='/nonexistent/pmix-tfds-test').info.features


def full_example(name, example):
  """`example` with every other feature of the `name` builder filled in."""
  extra = dict(movie_title='A Film (1995)', user_occupation_text='text', user_zip_code='55455')
  if name == 'movielens/100k-ratings':
    extra['raw_user_age'] = 30.0
  return {**extra, **example}


def serialized(name, examples):
  features = builder_features(name)
  return [features.serialize_example(features.encode_example(full_example(name, example)))
          for example in examples]


def decoded(name, examples):
  """Examples as TFDS decodes them (ids as byte strings, genres as label arrays)."""
  features = builder_features(name)
  return [features.deserialize_example_np(record) for record in serialized(name, examples)]


def mocked_load(name, records, features=ALL_FEATURES):
  """`load_tfds` with `tfds.data_source` mocked to serve `records`."""
  def as_data_source(self, split, decoders=None, deserialize_method=None, **kwargs):
    del self, decoders, deserialize_method, kwargs
    assert split == 'train'
    return list(records)

  with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE,
                              as_data_source_fn=as_data_source):
    return tfds_source.load_tfds(name, '/nonexistent/pmix-tfds-test', features)


def prepare(monkeypatch, data_dir, name, examples):
  """Lets TFDS prepare `name` in `data_dir` as array_record from `examples` (no download)."""
  monkeypatch.setattr(movielens.Movielens, '_split_generators',
                      lambda self, dl_manager: [tfds.core.SplitGenerator(name='train')])
  monkeypatch.setattr(movielens.Movielens, '_generate_examples',
                      lambda self: ((i, full_example(name, example))
                                    for i, example in enumerate(examples)))
  tfds.builder(name, data_dir=str(data_dir)).download_and_prepare(file_format='array_record')


def check_mapping(name, log, examples=EXAMPLES):
  """The log holds exactly `examples`, mapped field by field, in some order."""
  assert len(log.user) == len(examples)
  # TFDS shuffles records when preparing; match rows by (user, item, timestamp).
  rows = {(int(u), int(i), int(t)): k
          for k, (u, i, t) in enumerate(zip(log.user, log.item, log.timestamp))}
  labels = builder_features(name)
  genre_names = labels['movie_genres'].feature.names
  assert tuple(genre_names) == tfds_source.GENRES
  for example in examples:
    row = rows[(int(example['user_id']), int(example['movie_id']), example['timestamp'])]
    field = {name: int(values[row]) for name, values in log.fields.items()}
    assert field['action'] == round(example['user_rating'])
    when = datetime.datetime.fromtimestamp(example['timestamp'], datetime.timezone.utc)
    assert field['hour'] == when.hour + 1 and field['weekday'] == when.isoweekday()
    genres = example['movie_genres'] or ['(no genres listed)']
    assert field['category'] == genre_names.index(genres[0]) + 1
    assert field['gender'] == (2 if example['user_gender'] else 1)
    assert field['age'] == [1, 18, 25, 35, 45, 50, 56].index(example['bucketized_user_age']) + 1
    assert field['occupation'] == labels['user_occupation_label'].str2int(
        example['user_occupation_label']) + 1


@pytest.mark.parametrize('name', NAMES)
@pytest.mark.parametrize('form', [decoded, serialized])
def test_mock_data_mapping(name, form):
  """Ids, rating, time fields, genre and user fields of mocked examples, in log order."""
  log = mocked_load(name, form(name, EXAMPLES))
  np.testing.assert_array_equal(log.user, [7, 7, 42, 1000])
  np.testing.assert_array_equal(log.item, [12, 3, 12, 200])
  assert log.user.dtype == log.item.dtype == np.int64
  np.testing.assert_array_equal(log.timestamp, [881250949, 0, 893286638, 956703932])
  np.testing.assert_array_equal(log.fields['action'], [4, 1, 5, 2])
  # Drama is label 7; no genre -> '(no genres listed)' (20); Western 19.
  np.testing.assert_array_equal(log.fields['category'], [8, 21, 20, 21])
  np.testing.assert_array_equal(log.fields['gender'], [2, 2, 1, 1])
  np.testing.assert_array_equal(log.fields['age'], [3, 3, 1, 7])
  np.testing.assert_array_equal(log.fields['occupation'], [22, 22, 1, 2])
  assert log.fields['hour'][1] == 1 and log.fields['weekday'][1] == 4  # 1970-01-01, Thu.
  check_mapping(name, log)
  assert name in log.source


def test_prepared_array_record(tmp_path, monkeypatch):
  """A dataset TFDS prepared as array_record is read through the real data source."""
  name = 'movielens/100k-ratings'
  prepare(monkeypatch, tmp_path, name, EXAMPLES)
  log = tfds_source.load_tfds(name, str(tmp_path), ALL_FEATURES)
  check_mapping(name, log)
  data = sequences.build_sequences(log, ('action', 'category'))
  assert data.num_users == 3 and data.num_items == 3
  np.testing.assert_array_equal(data.item_ids, [3, 12, 200])


def test_registered_source_is_cached_by_the_prepared_files(tmp_path, monkeypatch):
  """`data.name=tfds` goes through the registry and the cache, whose key covers the
  prepared files: preparing other data in place is not served from the stale entry."""
  from configs import base  # pylint: disable=import-outside-toplevel
  from pmix_jax import data  # pylint: disable=import-outside-toplevel
  config = base.get_config().data
  config.update(dict(name='tfds', path=str(tmp_path / 'tfds'), features=('action',),
                     cache_dir=str(tmp_path / 'cache')))
  prepare(monkeypatch, tmp_path / 'tfds', config.tfds_name, EXAMPLES)
  first = data.load(config)
  assert data.load(config).num_users == first.num_users == 3
  assert len(os.listdir(tmp_path / 'cache')) == 2  # One entry: .npz and .json.
  for version in (tmp_path / 'tfds').glob('movielens/100k-ratings/*'):
    shutil.rmtree(version)
  prepare(monkeypatch, tmp_path / 'tfds', config.tfds_name, EXAMPLES[:2])
  assert data.load(config).num_users == 1


def test_batches_cover_all_records(tmp_path, monkeypatch):
  """Records are read in batches of CHUNK; none is lost or repeated at the boundaries."""
  monkeypatch.setattr(tfds_source, 'CHUNK', 3)
  examples = [dict(EXAMPLES[0], movie_id=str(i), timestamp=1000 + i) for i in range(1, 9)]
  prepare(monkeypatch, tmp_path, 'movielens/1m-ratings', examples)
  source_class = tfds.core.data_sources.array_record.ArrayRecordDataSource
  batches, get_batch = [], source_class.__getitems__
  monkeypatch.setattr(source_class, '__getitems__',
                      lambda self, keys: batches.append(list(keys)) or get_batch(self, keys))
  monkeypatch.setattr(source_class, '__getitem__', None)  # One record at a time is too slow.
  log = tfds_source.load_tfds('movielens/1m-ratings', str(tmp_path), ())
  assert batches == [[0, 1, 2], [3, 4, 5], [6, 7]]
  assert sorted(log.item.tolist()) == list(range(1, 9))
  np.testing.assert_array_equal(log.timestamp, log.item + 1000)


def test_only_requested_fields_are_built():
  """action, hour and weekday always; category and the user fields only when asked for."""
  name = 'movielens/1m-ratings'
  records = serialized(name, EXAMPLES)
  assert set(mocked_load(name, records, ()).fields) == {'action', 'hour', 'weekday'}
  log = mocked_load(name, records, ('category', 'action'))
  assert set(log.fields) == {'action', 'hour', 'weekday', 'category'}
  log = mocked_load(name, records, ('age',))
  assert set(log.fields) == {'action', 'hour', 'weekday', 'age'}


def load_error(examples, form=serialized, name='movielens/100k-ratings', features=ALL_FEATURES):
  with pytest.raises(DataError) as info:
    mocked_load(name, form(name, examples), features)
  return str(info.value)


@pytest.mark.parametrize('form', [decoded, serialized])
@pytest.mark.parametrize('field, value, shown', [
    ('user_id', 'u17', "'u17'"),
    ('movie_id', '12a', "'12a'"),
    ('movie_id', '0', "'0'"),
    ('user_id', '99999999999999999999', "'99999999999999999999'"),
])
def test_bad_id(form, field, value, shown):
  """A non-numeric or non-positive id names its record and field."""
  examples = list(EXAMPLES)
  examples[2] = dict(examples[2], **{field: value})
  message = load_error(examples, form)
  assert 'record 2:' in message and f"field '{field}'" in message and shown in message


@pytest.mark.parametrize('rating', [0.4, 5.6, 7.0, float('nan')])
def test_bad_rating(rating):
  """A rating that does not round to 1..5 names its record and the field user_rating."""
  examples = list(EXAMPLES)
  examples[3] = dict(examples[3], user_rating=rating)
  message = load_error(examples)
  assert 'record 3:' in message and "field 'user_rating'" in message and '[1, 5]' in message


def test_bad_age_only_matters_when_requested():
  """An age that is not a TFDS bucket is an error only when `age` is a requested feature."""
  examples = list(EXAMPLES)
  examples[1] = dict(examples[1], bucketized_user_age=30.0)
  message = load_error(examples)
  assert 'record 1:' in message and "field 'bucketized_user_age'" in message
  log = mocked_load('movielens/100k-ratings', serialized('movielens/100k-ratings', examples),
                    ('category',))
  assert 'age' not in log.fields


@pytest.mark.parametrize('form', ['decoded', 'serialized'])
def test_missing_feature(form):
  """A record without its timestamp names the record and the field."""
  name = 'movielens/1m-ratings'
  records = decoded(name, EXAMPLES) if form == 'decoded' else serialized(name, EXAMPLES)
  if form == 'decoded':
    del records[1]['timestamp']
  else:
    example = tf_example_pb2.Example.FromString(records[1])
    del example.features.feature['timestamp']
    records[1] = example.SerializeToString()
  with pytest.raises(DataError, match=r"record 1: field 'timestamp' is missing"):
    mocked_load(name, records)


def test_unrequested_features_are_not_read():
  """A record without the user features loads when they are not requested."""
  name = 'movielens/1m-ratings'
  records = serialized(name, EXAMPLES)
  example = tf_example_pb2.Example.FromString(records[0])
  for feature in ('user_gender', 'bucketized_user_age', 'user_occupation_label'):
    del example.features.feature[feature]
  records[0] = example.SerializeToString()
  assert set(mocked_load(name, records, ('category',)).fields) == {
      'action', 'hour', 'weekday', 'category'}
  with pytest.raises(DataError, match=r"record 0: field 'user_gender' is missing"):
    mocked_load(name, records, ('gender',))


def test_corrupt_record():
  name = 'movielens/1m-ratings'
  records = serialized(name, EXAMPLES)
  records[2] = b'\xff\xff not a protocol buffer'
  with pytest.raises(DataError, match='record 2 is not a valid serialized tf.train.Example'):
    mocked_load(name, records)


@pytest.mark.parametrize('name', ['movielens/25m-ratings', 'movielens/100k-movies', 'ml-100k',
                                  'movielens/100k-ratings:0.1.1'])
def test_unsupported_name(name):
  with pytest.raises(DataError) as info:
    tfds_source.load_tfds(name, '', ())
  message = str(info.value)
  assert repr(name) in message
  assert 'movielens/100k-ratings' in message and 'movielens/1m-ratings' in message


def test_not_prepared_fails_fast_without_download(tmp_path, monkeypatch):
  """An empty data_dir is a DataError saying how to prepare the data; nothing is fetched."""
  downloads = []
  monkeypatch.setattr(tfds.core.DatasetBuilder, 'download_and_prepare',
                      lambda *args, **kwargs: downloads.append(args))
  start = time.monotonic()
  with pytest.raises(DataError) as info:
    tfds_source.load_tfds('movielens/100k-ratings', str(tmp_path), ('category',))
  assert time.monotonic() - start < 10
  message = str(info.value)
  assert 'not prepared' in message and str(tmp_path) in message
  assert (f'tfds build movielens/100k-ratings --data_dir={tmp_path} --file_format=array_record'
          in message)
  assert 'config.data.name=ml-100k' in message
  assert not os.listdir(tmp_path)  # Nothing written either.
  assert not downloads


def test_prepared_as_tfrecord(tmp_path, monkeypatch):
  """Data prepared in the (default) TFRecord format is reported as such."""
  prepare(monkeypatch, tmp_path, 'movielens/1m-ratings', EXAMPLES)
  info_path, = [os.path.join(root, 'dataset_info.json') for root, _, files in os.walk(tmp_path)
                if 'dataset_info.json' in files]
  with open(info_path) as f:
    info = json.load(f)
  info['fileFormat'] = 'tfrecord'
  with open(info_path, 'w') as f:
    json.dump(info, f)
  with pytest.raises(DataError) as info:
    tfds_source.load_tfds('movielens/1m-ratings', str(tmp_path), ())
  message = str(info.value)
  assert 'as tfrecord' in message and '--file_format=array_record' in message
  assert 'config.data.name=ml-1m' in message


def test_missing_package(monkeypatch):
  """Without tensorflow_datasets the error says which requirements file installs it."""
  monkeypatch.setitem(sys.modules, 'tensorflow_datasets', None)
  with pytest.raises(DataError, match=r'pip install -r requirements-extras\.txt'):
    tfds_source.load_tfds('movielens/100k-ratings', '', ())


def test_data_package_does_not_import_tfds():
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  code = ('import sys, pmix_jax.data, pmix_jax.data.tfds_source; '
          "assert 'tensorflow_datasets' not in sys.modules")
  subprocess.run([sys.executable, '-c', code], cwd=root, check=True, timeout=60)
