"""Named preprocessing presets: the filters each paper applied before splitting.

Every preset maps an `InteractionLog` to a smaller one and reports what it removed, so that
nothing is dropped without being counted (`SequenceData.stats()` carries the counts).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from pmix_jax.data.sequences import InteractionLog
from pmix_jax.errors import ConfigError


def _keep(log: InteractionLog, mask: np.ndarray) -> InteractionLog:
  return dataclasses.replace(
      log, user=log.user[mask], item=log.item[mask], timestamp=log.timestamp[mask],
      fields={name: column[mask] for name, column in log.fields.items()})


def _counts(ids: np.ndarray) -> np.ndarray:
  """How often each entry's id occurs in `ids`, per entry."""
  _, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
  return counts[inverse]


def core_filter(log: InteractionLog, min_user: int, min_item: int) -> InteractionLog:
  """Iteratively drops users with < `min_user` and items with < `min_item` interactions
  until every remaining user and item meets its threshold (the k-core)."""
  while len(log.user):
    keep = (_counts(log.user) >= min_user) & (_counts(log.item) >= min_item)
    if keep.all():
      break
    log = _keep(log, keep)
  return log


def item_filter(log: InteractionLog, min_item: int) -> InteractionLog:
  """One pass: drops items with fewer than `min_item` interactions (SASRec's filter)."""
  return _keep(log, _counts(log.item) >= min_item)


@dataclasses.dataclass(frozen=True)
class Preset:
  filter: Callable[[InteractionLog], InteractionLog]
  split: str  # A name in `sequences.SPLITS`.


PRESETS: dict[str, Preset] = {
    'none': Preset(lambda log: log, 'leave_one_out'),
    # RecBole / MLP4Rec (Pyramid Mixer's protocol): iterative 5-core on users and items.
    'recbole_mlp4rec': Preset(lambda log: core_filter(log, 5, 5), 'leave_one_out'),
    # AutoMLP: the same, with users of fewer than 10 interactions removed.
    'automlp': Preset(lambda log: core_filter(log, 10, 5), 'leave_one_out'),
    # SASRec: items with fewer than 5 interactions dropped, once.
    'sasrec': Preset(lambda log: item_filter(log, 5), 'leave_one_out'),
    # SURGE / MGNM: no filter; all records split 70/10/20 by time.
    'surge': Preset(lambda log: log, 'temporal'),
}


def apply_preset(name: str, log: InteractionLog) -> tuple[InteractionLog, dict[str, int]]:
  """Returns the filtered log and the numbers of interactions, users and items removed."""
  if name not in PRESETS:
    raise ConfigError(f'unknown config.data.preset {name!r}; known: {sorted(PRESETS)}')
  filtered = PRESETS[name].filter(log)
  if not len(filtered.user):
    raise ConfigError(f'preset {name!r} removes every interaction of {log.source}')
  removed = dict(
      removed_interactions=len(log.user) - len(filtered.user),
      removed_users=len(np.unique(log.user)) - len(np.unique(filtered.user)),
      removed_items=len(np.unique(log.item)) - len(np.unique(filtered.item)))
  return filtered, removed
