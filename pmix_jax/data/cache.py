"""A cache of processed sequences, keyed by a hash of the input files and the data config.

A hit skips reading, filtering and splitting; any change to an input file's bytes, to a
value of `config.data` or to the code of this package gives another key. Entries are
written atomically.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import uuid

import ml_collections
import numpy as np

from pmix_jax.data.sequences import SequenceData

ARRAYS = ('behaviors', 'stage', 'user_start', 'user_length', 'item_ids', 'user_ids')


def input_files(config: ml_collections.ConfigDict) -> list[str]:
  """The files a dataset may read: a directory's files, a file and its siblings that share
  its stem (e.g. Beauty.txt and Beauty_item2attributes.json), or for TFDS every file of the
  prepared dataset under its data_dir."""
  path = config.path
  if not path:
    return []
  if config.name == 'tfds':
    root = os.path.join(path, config.tfds_name)
    return sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files)
  if os.path.isdir(path):
    candidates = glob.glob(os.path.join(path, '*'))
  else:
    candidates = glob.glob(glob.escape(os.path.splitext(path)[0]) + '*')
  return sorted(f for f in candidates if os.path.isfile(f))


def key(config: ml_collections.ConfigDict) -> str:
  """Hash of `config` (but its cache_dir), the input files' bytes and the data package's
  source, so that no entry outlives a change to the code that built it."""
  digest = hashlib.sha256()
  for source in sorted(glob.glob(os.path.join(os.path.dirname(__file__), '*.py'))):
    with open(source, 'rb') as f:
      digest.update(f.read())
  settings = {k: v for k, v in config.to_dict().items() if k != 'cache_dir'}
  digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
  for name in input_files(config):
    digest.update(os.path.relpath(name, config.path).encode())
    with open(name, 'rb') as f:
      digest.update(hashlib.sha256(f.read()).digest())
  return digest.hexdigest()[:24]


def load(directory: str, entry: str) -> SequenceData | None:
  path = os.path.join(directory, entry)
  if not os.path.exists(path + '.npz'):
    return None
  with np.load(path + '.npz', allow_pickle=False) as arrays:
    loaded = {name: arrays[name] for name in ARRAYS}
  with open(path + '.json') as f:
    scalars = json.load(f)
  return SequenceData(field_names=tuple(scalars['field_names']),
                      vocab_sizes=tuple(scalars['vocab_sizes']), source=scalars['source'],
                      counts=scalars['counts'], **loaded)


def save(directory: str, entry: str, data: SequenceData) -> None:
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, entry)
  scalars = dict(field_names=data.field_names, vocab_sizes=data.vocab_sizes,
                 source=data.source, counts=data.counts)
  # Temporary names of this writer's own: processes of a sweep that start together build
  # and save the same entry (same bytes), and a shared name let one move the other's file.
  unique = f'.{uuid.uuid4().hex}.tmp'
  try:
    with open(path + '.json' + unique, 'w') as f:
      json.dump(scalars, f)
    with open(path + '.npz' + unique, 'wb') as f:
      np.savez(f, allow_pickle=False, **{name: getattr(data, name) for name in ARRAYS})
    # The .npz appears last, so a reader that finds it finds the .json too.
    os.replace(path + '.json' + unique, path + '.json')
    os.replace(path + '.npz' + unique, path + '.npz')
  finally:  # A failed write (a full disk, say) leaves no temporary file behind.
    for suffix in ('.json', '.npz'):
      if os.path.exists(path + suffix + unique):
        os.remove(path + suffix + unique)


def cached(config: ml_collections.ConfigDict, build) -> SequenceData:
  """`build()` unless an entry for `config` is in `config.cache_dir` ('' disables; so does
  TFDS's default data_dir, whose files the key cannot name)."""
  if not config.cache_dir or (config.name == 'tfds' and not config.path):
    return build()
  directory = os.path.expanduser(config.cache_dir)
  entry = f'{config.name}-{key(config)}'
  data = load(directory, entry)
  if data is None:
    data = build()
    save(directory, entry, data)
  return data
