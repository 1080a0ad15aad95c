"""MovieLens ratings from TensorFlow Datasets (TFDS), read without TensorFlow.

For users who already have `movielens/100k-ratings` or `movielens/1m-ratings` prepared in a
TFDS `data_dir` in the `array_record` format: the whole 'train' split (the only one) is read
with `tfds.data_source` (random access, no TensorFlow) and never downloaded. Data prepared in
the default TFRecord format cannot be read without TensorFlow; the raw GroupLens files
(`config.data.name=ml-100k` / `ml-1m`) need neither TFDS nor TensorFlow and load faster.

Mapping of a TFDS example to one behavior of the `InteractionLog`:
- `user_id`, `movie_id` (numeric byte strings) -> the raw user and item ids, as integers
  like the GroupLens loaders, so the item numbering is the same;
- `timestamp` (unix seconds) -> the timestamp and the `hour` and `weekday` fields;
- `user_rating` -> `action`, rounded to an integer in 1..5;
- only when named in `features`: `category` = index + 1 of the movie's first genre in TFDS's
  21 `movie_genres` labels (`GENRES`; a movie with no genre gets '(no genres listed)'),
  `gender` (1 female, 2 male), `age` (1..7, the position of `bucketized_user_age` in
  `AGE_BUCKETS`) and `occupation` (`user_occupation_label` + 1, 1..22).

Records are fetched in batches (`__getitems__`) as serialized `tf.train.Example`s and only the
needed features are read from them, about 6x faster than TFDS's own per-example decoding.
`tensorflow_datasets` is an optional extra, imported only when a TFDS dataset is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
import operator

import numpy as np

from pmix_jax.data.sequences import InteractionLog, time_fields
from pmix_jax.errors import DataError

# Supported TFDS name -> the `config.data.name` reading the same data from GroupLens files.
SUPPORTED = {'movielens/100k-ratings': 'ml-100k', 'movielens/1m-ratings': 'ml-1m'}

# The `movie_genres` class labels of the TFDS builder, in order.
GENRES = ('Action', 'Adventure', 'Animation', 'Children', 'Comedy', 'Crime', 'Documentary',
          'Drama', 'Fantasy', 'Film-Noir', 'Horror', 'IMAX', 'Musical', 'Mystery', 'Romance',
          'Sci-Fi', 'Thriller', 'Unknown', 'War', 'Western', '(no genres listed)')
NO_GENRE = GENRES.index('(no genres listed)')
# Values of `bucketized_user_age` (the lowest age of each range).
AGE_BUCKETS = (1, 18, 25, 35, 45, 50, 56)
# Number of `user_occupation_label` classes.
NUM_OCCUPATIONS = 22

# Feature -> the value list of the `tf.train.Example` that stores it.
KINDS = dict(user_id='bytes_list', movie_id='bytes_list', user_rating='float_list',
             timestamp='int64_list', movie_genres='int64_list', user_gender='int64_list',
             bucketized_user_age='float_list', user_occupation_label='int64_list')
# Optional field -> the TFDS feature it comes from.
OPTIONAL = dict(category='movie_genres', gender='user_gender', age='bucketized_user_age',
                occupation='user_occupation_label')
# Records fetched per `__getitems__` call.
CHUNK = 50_000


def load_tfds(name: str, data_dir: str, features: tuple[str, ...]) -> InteractionLog:
  """Reads a prepared TFDS MovieLens ratings dataset as an interaction log.

  Args:
    name: 'movielens/100k-ratings' or 'movielens/1m-ratings'.
    data_dir: the TFDS data_dir holding the prepared data; '' for TFDS's default
      (`$TFDS_DATA_DIR` or ~/tensorflow_datasets).
    features: the requested feature fields; `action`, `hour` and `weekday` are always built,
      `category`, `gender`, `age` and `occupation` only when named here.

  Returns:
    The log, one behavior per rating, with raw integer user and item ids.

  Raises:
    DataError: unsupported name, `tensorflow_datasets` not installed, data not prepared (or
      not as array_record), or a record with a missing or invalid feature (its index in the
      'train' split and the feature are named).
  """
  if name not in SUPPORTED:
    raise DataError(f'unsupported TFDS dataset {name!r} (config.data.tfds_name); supported: '
                    f'{sorted(SUPPORTED)}')
  tfds = _import_tfds()
  source = f'TFDS {name} in {data_dir or "the default TFDS data_dir"}'
  records = _open(tfds, name, data_dir)
  wanted = ['user_id', 'movie_id', 'user_rating', 'timestamp'] + [
      feature for field, feature in OPTIONAL.items() if field in features]
  columns = _read_columns(records, wanted, source)
  user, item = (_ids(columns[feature], feature, source) for feature in ('user_id', 'movie_id'))
  timestamp = _integers(columns['timestamp'], 'timestamp', source)
  _check(timestamp < 0, columns['timestamp'], 'timestamp', source, 'is negative')
  rating = columns['user_rating'].astype(np.float64)
  action = np.rint(rating)
  _check(~((action >= 1) & (action <= 5)), rating, 'user_rating', source,
         'is outside [1, 5] after rounding')
  fields = dict(action=action.astype(np.int64), **time_fields(timestamp))
  if 'category' in features:
    genre = _integers(columns['movie_genres'], 'movie_genres', source)
    genre = np.where(genre == -1, NO_GENRE, genre)  # -1: the movie has no genre.
    _check((genre < 0) | (genre >= len(GENRES)), genre, 'movie_genres', source,
           f'is not a genre label in [0, {len(GENRES)})')
    fields['category'] = genre + 1
  if 'gender' in features:
    gender = _integers(columns['user_gender'], 'user_gender', source)
    _check((gender < 0) | (gender > 1), gender, 'user_gender', source, 'is not a boolean')
    fields['gender'] = gender + 1
  if 'age' in features:
    age = columns['bucketized_user_age'].astype(np.float64)
    bucket = np.minimum(np.searchsorted(AGE_BUCKETS, age), len(AGE_BUCKETS) - 1)
    _check(np.asarray(AGE_BUCKETS)[bucket] != age, age, 'bucketized_user_age', source,
           f'is not one of {AGE_BUCKETS}')
    fields['age'] = bucket + 1
  if 'occupation' in features:
    occupation = _integers(columns['user_occupation_label'], 'user_occupation_label', source)
    _check((occupation < 0) | (occupation >= NUM_OCCUPATIONS), occupation,
           'user_occupation_label', source, f'is not a label in [0, {NUM_OCCUPATIONS})')
    fields['occupation'] = occupation + 1
  return InteractionLog(user=user, item=item, timestamp=timestamp, fields=fields,
                        source=source)


def _import_tfds():
  try:
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  except ImportError as error:
    raise DataError(f'TFDS datasets need the optional package tensorflow_datasets ({error}); '
                    'install it with `pip install -r requirements-extras.txt`') from None
  return tfds


def _open(tfds, name: str, data_dir: str):
  """The 'train' split as a random-access source of serialized examples; never downloads."""
  try:
    return tfds.data_source(name, split='train', data_dir=data_dir or None, download=False,
                            deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
  except Exception as error:  # pylint: disable=broad-except
    raise DataError(_not_prepared_message(tfds, name, data_dir, error)) from None


def _not_prepared_message(tfds, name: str, data_dir: str, error: Exception) -> str:
  """Why `name` could not be opened, and how to prepare it."""
  detail = (str(error).strip() or type(error).__name__).splitlines()[0]
  try:
    builder = tfds.builder(name, data_dir=data_dir or None)
    where, prepared = builder.data_dir, builder.is_prepared()
    file_format = getattr(builder.info.file_format, 'value', builder.info.file_format)
  except Exception:  # pylint: disable=broad-except
    where, prepared, file_format = data_dir or 'the default TFDS data_dir', None, None
  if prepared is None:
    reason = f'TFDS failed ({type(error).__name__}: {detail})'
  elif not prepared:
    reason = f'it is not prepared in {where}'
  elif file_format != 'array_record':
    reason = (f'it is prepared in {where} as {file_format}, which cannot be read without '
              'TensorFlow')
  else:
    reason = f'it could not be opened in {where} ({type(error).__name__}: {detail})'
  return (f'cannot read TFDS dataset {name}: {reason}. Prepare it with `tfds build {name} '
          f'--data_dir={data_dir or "DIR"} --file_format=array_record` (needs TensorFlow), or '
          f'use the raw GroupLens files instead: --config.data.name={SUPPORTED[name]} '
          '--config.data.path=DIR')


def _read_columns(records, wanted: list[str], source: str) -> dict[str, np.ndarray]:
  """Reads the features `wanted` of every record, in batches, as `[N]` arrays.

  `movie_genres` becomes its first label, or -1 for an empty list.
  """
  total = len(records)
  if not total:
    raise DataError(f'{source}: the train split is empty')
  get_batch = getattr(records, '__getitems__', None)
  parts = {feature: [] for feature in wanted}
  for start in range(0, total, CHUNK):
    keys = list(range(start, min(total, start + CHUNK)))
    try:
      batch = get_batch(keys) if get_batch else [records[key] for key in keys]
    except Exception as error:  # pylint: disable=broad-except
      raise DataError(f'{source}: reading records {start}..{keys[-1]} failed: '
                      f'{type(error).__name__}: {error}') from None
    if isinstance(batch[0], (bytes, memoryview)):
      columns = _example_columns(batch, wanted, source, start)
    elif isinstance(batch[0], Mapping):  # Already decoded (e.g. by tfds.testing.mock_data).
      columns = _mapping_columns(batch, wanted, source, start)
    else:
      raise DataError(f'{source}: record {start} is a {type(batch[0]).__name__}, expected '
                      'a serialized tf.train.Example or a dict of features')
    for feature, values in columns.items():
      parts[feature].append(values)
  return {feature: np.concatenate(values) for feature, values in parts.items()}


def _example_columns(batch: list[bytes], wanted: list[str], source: str, start: int
                     ) -> dict[str, np.ndarray]:
  """Columns of serialized `tf.train.Example`s, parsed with TFDS's TensorFlow-free proto."""
  from google.protobuf.message import DecodeError  # pylint: disable=import-outside-toplevel
  from tensorflow_datasets.proto import tf_example_pb2  # pylint: disable=import-outside-toplevel
  parse = tf_example_pb2.Example.FromString
  try:
    maps = [parse(record).features.feature for record in batch]
  except DecodeError:
    for index, record in enumerate(batch):
      try:
        parse(record)
      except DecodeError:
        raise DataError(f'{source}: record {start + index} is not a valid serialized '
                        'tf.train.Example') from None
    raise
  columns = {}
  for feature in wanted:
    get = operator.attrgetter(f'{KINDS[feature]}.value')  # A missing feature reads as [].
    if feature == 'movie_genres':
      columns[feature] = np.asarray([get(map_[feature])[:1] or [-1] for map_ in maps])[:, 0]
      continue
    try:
      columns[feature] = np.asarray([get(map_[feature])[0] for map_ in maps])
    except IndexError:
      index = next(i for i, map_ in enumerate(maps) if not get(map_[feature]))
      raise DataError(f'{source}: record {start + index}: field {feature!r} is missing (no '
                      f'{KINDS[feature]} value)') from None
  return columns


def _mapping_columns(batch: list[Mapping], wanted: list[str], source: str, start: int
                     ) -> dict[str, np.ndarray]:
  columns = {}
  for feature in wanted:
    try:
      values = [record[feature] for record in batch]
    except KeyError:
      index = next(i for i, record in enumerate(batch) if feature not in record)
      raise DataError(f'{source}: record {start + index}: field {feature!r} is missing'
                      ) from None
    if feature == 'movie_genres':
      values = [genres[0] if len(genres) else -1 for genres in values]
    columns[feature] = np.asarray(values)
  return columns


def _integers(values: np.ndarray, feature: str, source: str) -> np.ndarray:
  """`values` (numbers or numeric strings) as int64; the first that is not an integer is an
  error naming its record."""
  if values.dtype.kind in 'biu':
    return values.astype(np.int64)
  if values.dtype.kind == 'f':
    _check(~np.isfinite(values) | (values != np.round(values)) | (np.abs(values) >= 2**63),
           values, feature, source, 'is not an integer')
    return values.astype(np.int64)
  try:
    return values.astype(np.int64)
  except (ValueError, TypeError, OverflowError):
    for index, value in enumerate(values):
      try:
        if not -2**63 <= int(value) < 2**63:
          raise OverflowError
      except (ValueError, TypeError, OverflowError):
        raise DataError(f'{source}: record {index}: field {feature!r} is not an integer '
                        f'(64-bit): {_shown(value)!r}') from None
    raise


def _ids(values: np.ndarray, feature: str, source: str) -> np.ndarray:
  ids = _integers(values, feature, source)
  _check(ids < 1, values, feature, source, 'is not a positive integer id')
  return ids


def _check(bad: np.ndarray, values: np.ndarray, feature: str, source: str, problem: str
           ) -> None:
  """Raises naming the first record where `bad` is set."""
  if bad.any():
    index = int(np.argmax(bad))
    raise DataError(f'{source}: record {index}: field {feature!r} = '
                    f'{_shown(values[index])!r} {problem}')


def _shown(value):
  """A value for a message: byte strings decoded, numpy scalars as Python ones."""
  if isinstance(value, bytes):
    return value.decode('utf-8', 'replace')
  return value.item() if isinstance(value, np.generic) else value
