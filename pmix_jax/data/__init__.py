"""Data package: dataset registry, sequences and the leave-one-out split, batches."""

from __future__ import annotations

from typing import Callable

import ml_collections

from pmix_jax.data import movielens, synthetic
from pmix_jax.data.sequences import InteractionLog, SequenceData, build_sequences
from pmix_jax.errors import DataError

# name -> function(config.data) -> InteractionLog.
DATASETS: dict[str, Callable[[ml_collections.ConfigDict], InteractionLog]] = {
    'synthetic': lambda cfg: synthetic.generate(**cfg.synthetic),
    'ml-100k': lambda cfg: movielens.load_ml100k(cfg.path, tuple(cfg.features)),
}


def load(config: ml_collections.ConfigDict) -> SequenceData:
  """Reads `config.data.name` and returns its sequences with the requested feature fields."""
  if config.name not in DATASETS:
    raise DataError(f'unknown config.data.name {config.name!r}; known: {sorted(DATASETS)}')
  return build_sequences(DATASETS[config.name](config), tuple(config.features))


__all__ = ['DATASETS', 'DataError', 'InteractionLog', 'SequenceData', 'load']
