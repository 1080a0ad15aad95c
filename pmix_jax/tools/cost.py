r"""Parameters and FLOPs per example of a config's model, from XLA's compiled cost analysis.

    python -m pmix_jax.tools.cost --config=configs/pyramid.py [--config.data.max_len=200]

Prints the parameter count (embedding tables and the rest), and the FLOPs per example of
one training step (forward, backward and optimizer update, with the config's loss and
target mode; an example is one row of the batch, which in `seq2seq` mode carries up to
`max_len` targets) and of inference (the user representation and the scores of every item), as
XLA counts them for the compiled programs on this backend: nothing is counted by hand.
"""

from __future__ import annotations

import sys
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, logging
from ml_collections import config_flags

from pmix_jax import train
from pmix_jax.errors import PmixError

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Model config file.',
                                          lock_config=True)


def _flops(compiled) -> float:
  cost = compiled.cost_analysis()
  return float((cost[0] if isinstance(cost, list) else cost)['flops'])


def count_params(params: Any) -> dict[str, int]:
  """Parameters in embedding tables (a path with `embed` in a name: ids and positions) and
  in everything else."""
  counts = dict(embedding=0, other=0)
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    names = [str(getattr(key, 'key', '')).lower() for key in path]
    kind = 'embedding' if any('embed' in name for name in names) else 'other'
    counts[kind] += int(np.prod(leaf.shape))
  counts['total'] = counts['embedding'] + counts['other']
  return counts


def measure(config: ml_collections.ConfigDict, training: bool = True) -> dict[str, Any]:
  """Parameter counts and per-example FLOPs of `config`'s model on `config.data`; without
  `training`, the training step is not compiled and its FLOPs are None."""
  setup = train.Setup.create(config)
  batch = next(iter(setup.train_batches.epoch(0)))
  batch_size = len(batch['inputs'])
  train_flops = (_flops(setup.step_fn.lower(setup.state, batch).compile()) if training
                 else None)
  inputs = jnp.asarray(batch['inputs'])
  score = jax.jit(setup.score_fn)
  inference_flops = _flops(score.lower(setup.state.params, inputs).compile())
  return dict(model=config.model.name, params=count_params(setup.state.params),
              max_len=setup.max_len, num_items=setup.data.num_items,
              targets=config.train.targets, batch_size=batch_size,
              train_flops_per_example=None if train_flops is None else train_flops / batch_size,
              inference_flops_per_example=inference_flops / batch_size)


def format_report(cost: dict[str, Any]) -> str:
  params = cost['params']
  return '\n'.join([
      f'{cost["model"]}: max_len {cost["max_len"]}, {cost["num_items"]:,} items, '
      f'batch {cost["batch_size"]}, targets {cost["targets"]}',
      f'  parameters        {params["total"]:,} ({params["embedding"]:,} in embedding tables, '
      f'{params["other"]:,} elsewhere)',
      f'  train MFLOP/example      {cost["train_flops_per_example"] / 1e6:,.2f} '
      '(forward + backward + update)' if cost['train_flops_per_example'] is not None else
      '  train MFLOP/example      not measured',
      f'  inference MFLOP/example  {cost["inference_flops_per_example"] / 1e6:,.2f} '
      '(representation + scores of every item)'])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError('usage: python -m pmix_jax.tools.cost --config=...')
  logging.set_verbosity(logging.WARNING)
  if _CONFIG.value is None:
    raise app.UsageError('--config is required')
  try:
    print(format_report(measure(_CONFIG.value)))
  except PmixError as error:
    sys.exit(f'error: {error}')


if __name__ == '__main__':
  app.run(main)
