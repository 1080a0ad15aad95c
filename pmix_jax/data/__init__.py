"""Data package: dataset registry, sequences and the leave-one-out split, batches."""

from __future__ import annotations

from typing import Callable

import dataclasses

import ml_collections

from pmix_jax.data import (cache, movielens, preprocessing, recbole, sequence_files,
                           synthetic, tabular, tfds_source)
from pmix_jax.data.sequences import SPLITS, InteractionLog, SequenceData, build_sequences
from pmix_jax.errors import ConfigError, DataError

# name -> function(config.data) -> InteractionLog.
DATASETS: dict[str, Callable[[ml_collections.ConfigDict], InteractionLog]] = {
    'synthetic': lambda cfg: synthetic.generate(**cfg.synthetic),
    'ml-100k': lambda cfg: movielens.load_ml100k(cfg.path, tuple(cfg.features)),
    'ml-1m': lambda cfg: movielens.load_ml1m(cfg.path, tuple(cfg.features)),
    'ml-1m-seq': lambda cfg: movielens.load_ml1m_sequences(cfg.path, tuple(cfg.features)),
    'sequence-file': lambda cfg: sequence_files.load_sequence_file(cfg.path,
                                                                   tuple(cfg.features)),
    'recbole': lambda cfg: recbole.load_recbole(cfg.path, tuple(cfg.features)),
    'amazon-ratings': lambda cfg: tabular.load_amazon_ratings(cfg.path, tuple(cfg.features)),
    'table': tabular.load_generic,
    # TensorFlow Datasets (optional extra; imported only when used).
    'tfds': lambda cfg: tfds_source.load_tfds(cfg.tfds_name, cfg.path, tuple(cfg.features)),
}


def load(config: ml_collections.ConfigDict) -> SequenceData:
  """Reads `config.data.name`, applies `config.data.preset` and its split (or
  `config.data.split`), and returns the sequences with the requested feature fields."""
  if config.name not in DATASETS:
    raise DataError(f'unknown config.data.name {config.name!r}; known: {sorted(DATASETS)}')
  return cache.cached(config, lambda: _build(config))


def _build(config: ml_collections.ConfigDict) -> SequenceData:
  # `user` is derived from the ids by build_sequences, whatever the source.
  read_config = ml_collections.ConfigDict(config.to_dict())
  read_config.features = tuple(name for name in config.features if name != 'user')
  log, removed = preprocessing.apply_preset(config.preset, DATASETS[config.name](read_config))
  split = config.split or preprocessing.PRESETS[config.preset].split
  if split not in SPLITS:
    raise ConfigError(f'unknown config.data.split {split!r}; known: {sorted(SPLITS)}')
  data = build_sequences(log, tuple(config.features), split)
  return dataclasses.replace(data, counts={**removed, **data.counts})


__all__ = ['DATASETS', 'DataError', 'InteractionLog', 'SequenceData', 'load']
