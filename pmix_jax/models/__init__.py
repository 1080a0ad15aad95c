"""Model registry: config name -> linen module.

Every model maps `inputs` `[B, L, F]` (int ids, field 0 the item, 0 = padding, left-padded)
to `(hidden, item_table)`: `hidden` `[B, T, D]` user states and `item_table` `[V, D]` the
item embeddings they are scored against (`scores = hidden @ item_table.T`). A *causal* model
returns `T = L`, one state per position that sees only earlier positions, and can be trained
on every position (`train.targets = 'seq2seq'`); others return `T = 1`, the state after the
last behavior.

A model whose training signal is not "predict the next item from this state" (BERT4Rec's
masked items, for one) also defines `training_loss(self, batch, *, loss, num_negatives)`:
`batch` holds `inputs` and `targets` as the loop batches them (`[B]` per row for `prefix`,
`[B, L]` for `seq2seq`), `loss` and `num_negatives` are `config.train`'s, randomness comes
from the 'dropout' and 'negatives' RNG streams, and it returns the scalar loss. The loop
then calls it instead of the generic loss, and may train such a model on windows.

A model whose user state depends on the item it scores (MGNM's target-aware attention over
interests) also defines `score_items(self, inputs)` -> `[B, V]` scores of every item after
the last behavior (evaluation mode); evaluation calls it instead of `hidden @ item_table.T`.
One whose per-item scoring costs more than a dot product (SURGE's per-item network, MGNM's
attention over interests) also defines
`score_candidates(self, inputs, candidates)` -> `[B, C]` scores of the items `candidates`
`[B, C]`, which sampled protocols then call with each target and its negatives only.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import ml_collections

from pmix_jax.errors import ConfigError

MODELS: dict[str, type[nn.Module]] = {}


def register(name: str):
  def decorator(cls: type[nn.Module]) -> type[nn.Module]:
    MODELS[name] = cls
    return cls
  return decorator


def build(config: ml_collections.ConfigDict, vocab_sizes: tuple[int, ...],
          max_len: int) -> nn.Module:
  """Instantiates `config.name` with the other keys of `config` as its hyperparameters."""
  if config.name not in MODELS:
    raise ConfigError(f'unknown config.model.name {config.name!r}; known: {sorted(MODELS)}')
  cls = MODELS[config.name]
  fields = {f.name for f in dataclasses.fields(cls)} - {'parent', 'name'}
  kwargs = {k: v for k, v in config.items() if k != 'name'}
  unknown = sorted(set(kwargs) - fields)
  if unknown:
    raise ConfigError(f'config.model has key(s) {unknown} that model {config.name!r} does not '
                     f'take; it takes {sorted(fields - {"vocab_sizes", "max_len"})}')
  kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
  return cls(vocab_sizes=tuple(vocab_sizes), max_len=max_len, **kwargs)


# Importing the modules fills the registry.
from pmix_jax.models import (automlp, bert4rec, bpr_mf, caser, comirec,  # noqa: E402,F401
                             fdsa, fmlp_rec, fpmc, gru4rec, mgnm, mimn, mind, mlp4rec,
                             mlp_mixer, nextitnet, pyramid_mixer, sasrec, sli_rec, surge)
