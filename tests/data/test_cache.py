"""The processed-data cache: hits equal fresh builds, and any input change misses."""

import os

import numpy as np

from configs import base
from pmix_jax import data
from pmix_jax.data import cache


def _config(tmp_path, path):
  config = base.get_config().data
  config.update(dict(name='sequence-file', path=str(path), features=(),
                     cache_dir=str(tmp_path / 'cache')))
  return config


def _assert_same(a, b):
  for name in cache.ARRAYS:
    np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
  assert (a.field_names, a.vocab_sizes, a.source, a.counts) == (
      b.field_names, b.vocab_sizes, b.source, b.counts)


def test_hit_equals_a_fresh_build_and_changes_miss(tmp_path):
  path = tmp_path / 'Shop.txt'
  path.write_text('1 10 11 12 13\n2 11 10 12\n')
  config = _config(tmp_path, path)
  first = data.load(config)
  assert len(os.listdir(tmp_path / 'cache')) == 2  # .npz and .json
  path.write_text('1 10 11 12 13\n2 11 10 12\n')  # Same bytes: a hit.
  _assert_same(data.load(config), first)
  assert len(os.listdir(tmp_path / 'cache')) == 2
  path.write_text('1 10 11 12 13\n2 11 10 13\n')  # Other bytes: a miss, a new entry.
  changed = data.load(config)
  assert changed.behaviors[-1, 0] != first.behaviors[-1, 0]
  config.split = 'per_user_temporal'  # Another config value: a miss.
  data.load(config)
  assert len(os.listdir(tmp_path / 'cache')) == 6


def test_disabled_cache_writes_nothing(tmp_path):
  path = tmp_path / 'Shop.txt'
  path.write_text('1 10 11 12\n')
  config = _config(tmp_path, path)
  config.cache_dir = ''
  data.load(config)
  assert not (tmp_path / 'cache').exists()


def test_writers_of_one_entry_at_once_both_succeed(tmp_path, monkeypatch):
  """Processes of a sweep that start together save the same entry: a second writer that
  runs between the first one's two renames must not take the first one's files."""
  path = tmp_path / 'Shop.txt'
  path.write_text('1 10 11 12 13\n2 11 10 12\n')
  config = _config(tmp_path, path)
  config.cache_dir = ''
  built = data.load(config)
  directory = str(tmp_path / 'cache')
  replace = os.replace
  interleaved = []

  def replace_with_another_writer_between(source, target):
    replace(source, target)
    if not interleaved:
      interleaved.append(True)
      cache.save(directory, 'entry', built)  # The other writer, whole.

  monkeypatch.setattr(cache.os, 'replace', replace_with_another_writer_between)
  cache.save(directory, 'entry', built)
  assert interleaved
  assert sorted(os.listdir(directory)) == ['entry.json', 'entry.npz']  # No .tmp left.
  _assert_same(cache.load(directory, 'entry'), built)
