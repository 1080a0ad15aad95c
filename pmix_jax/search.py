"""AutoMLP's short-term length search (DARTS, Liu et al., ICLR 2019), then its retraining.

The search trains the relaxed model (`models/automlp.py`: one short-term module per candidate
k, mixed by softmax(α)) with two optimisers over disjoint parameters, alternating, every
step jitted and data parallel like `train.py`'s:
- α (the parameter `ARCH_PARAM`) descends the *validation* loss (Adam with DARTS' settings:
  `arch_lr`, betas 0.5/0.999, `arch_weight_decay`);
- the weights W descend the *training* loss with `config.train`'s optimiser.
With `order='second'`, α's gradient is taken through one virtual weight step,
`L_val(W - ξ ∇_W L_train(W, α), α)`, differentiated exactly by JAX (DARTS approximates the
Hessian-vector product by finite differences); `order='first'` uses `L_val(W, α)`.
The chosen k is argmax α; the model is rebuilt with that k alone and trained from scratch by
the one training loop. The search writes `workdir/search/`: `result.json` (candidates, chosen
k, the softmax(α) trajectory, wall time) and `alpha.png`.

Resuming: the search state is checkpointed in `search/checkpoints/` like training's, so a
killed search resumes where it was and ends as an uninterrupted one would; a finished search
is read back from `result.json`; the retraining resumes from its checkpoints as any run does.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import sys
import time
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from jax.sharding import NamedSharding, PartitionSpec as P

from pmix_jax import data as data_lib
from pmix_jax import mesh as mesh_lib
from pmix_jax import models, train
from pmix_jax.data import batches as batches_lib
from pmix_jax.errors import ConfigError
from pmix_jax.models.automlp import ARCH_PARAM

ORDERS = ('first', 'second')


@flax.struct.dataclass
class SearchState:
  step: jax.Array
  weights: Any
  arch: Any  # {ARCH_PARAM: α [K]}
  weights_opt_state: Any
  arch_opt_state: Any
  rng: jax.Array  # Raw key data.


def architecture_gradient(weights: Any, arch: Any, train_batch: dict[str, jax.Array],
                          valid_batch: dict[str, jax.Array], train_key: jax.Array,
                          valid_key: jax.Array, *, loss_fn: Callable, second_order: bool,
                          xi: float, length_cost: jax.Array | None = None,
                          length_penalty: float = 0.0) -> tuple[jax.Array, Any]:
  """The validation objective and its gradient in α: `L_val(W, α)` (first order) or
  `L_val(W - ξ ∇_W L_train(W, α), α)` (second order, through the virtual step), plus
  `length_penalty * Σ_k softmax(α)_k length_cost_k`.

  `loss_fn(params, batch, key)` is the training loss (`train.batch_loss`).
  """
  def valid_loss(arch):
    unrolled = weights
    if second_order:
      train_grads = jax.grad(lambda w: loss_fn({**w, **arch}, train_batch, train_key))(weights)
      unrolled = jax.tree.map(lambda w, g: w - xi * g, weights, train_grads)
    value = loss_fn({**unrolled, **arch}, valid_batch, valid_key)
    if length_penalty:  # The expected length of the relaxed short-term window.
      value += length_penalty * jax.nn.softmax(arch[ARCH_PARAM]) @ length_cost
    return value
  return jax.value_and_grad(valid_loss)(arch)


def search_step(state: SearchState, train_batch: dict[str, jax.Array],
                valid_batch: dict[str, jax.Array], *, loss_fn: Callable,
                weights_tx: optax.GradientTransformation, arch_tx: optax.GradientTransformation,
                second_order: bool, xi: float, length_cost: jax.Array | None = None,
                length_penalty: float = 0.0) -> tuple[SearchState, dict[str, jax.Array]]:
  """One α step on `valid_batch` (DARTS' order), then one weight step on `train_batch`."""
  key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
  train_key, valid_key = jax.random.split(key)
  valid_value, arch_grads = architecture_gradient(
      state.weights, state.arch, train_batch, valid_batch, train_key, valid_key,
      loss_fn=loss_fn, second_order=second_order, xi=xi, length_cost=length_cost,
      length_penalty=length_penalty)
  updates, arch_opt_state = arch_tx.update(arch_grads, state.arch_opt_state, state.arch)
  arch = optax.apply_updates(state.arch, updates)
  train_value, weight_grads = jax.value_and_grad(
      lambda w: loss_fn({**w, **arch}, train_batch, train_key))(state.weights)
  updates, weights_opt_state = weights_tx.update(weight_grads, state.weights_opt_state,
                                                 state.weights)
  new_state = state.replace(step=state.step + 1,
                            weights=optax.apply_updates(state.weights, updates), arch=arch,
                            weights_opt_state=weights_opt_state, arch_opt_state=arch_opt_state)
  return new_state, dict(train_loss=train_value, valid_loss=valid_value)


def run_search(config: ml_collections.ConfigDict,
               checkpoint_dir: str | None = None) -> dict[str, Any]:
  """Searches k among `config.model.short_lengths`; returns the record of the search.

  With `checkpoint_dir`, the search state is saved there (every
  `config.train.checkpoint_every_steps` steps and every epoch) and a rerun resumes from it.
  """
  options = config.automlp
  if options.order not in ORDERS:
    raise ConfigError(f'config.automlp.order must be one of {ORDERS}, not {options.order!r}')
  if options.length_penalty < 0:
    raise ConfigError('config.automlp.length_penalty must be >= 0')
  if options.search_epochs < 1:
    raise ConfigError('config.automlp.search_epochs must be at least 1')
  candidates = tuple(config.model.short_lengths)
  if len(candidates) < 2:
    raise ConfigError('the search needs at least two candidate lengths in '
                      f'config.model.short_lengths, not {candidates}')
  data = data_lib.load(config.data)
  max_len = config.data.max_len
  model = models.build(config.model, data.vocab_sizes, max_len)
  mesh = mesh_lib.data_mesh()
  train.check_config(config, model, mesh.devices.size)
  replicated = NamedSharding(mesh, P())
  batch_sharding = NamedSharding(mesh, P(mesh_lib.DATA_AXIS))
  batch_size = config.train.batch_size
  train_batches = batches_lib.TrainBatches(data, batches_lib.prefix_rows(data), max_len,
                                           batch_size, False, config.seed)
  valid_batches = batches_lib.TrainBatches(data, batches_lib.eval_rows(data, 'valid'),
                                           max_len, batch_size, False, config.seed + 1)
  total_steps = options.search_epochs * train_batches.steps_per_epoch
  weights_tx = train.make_optimizer(config.train, total_steps)
  arch_tx = optax.adamw(options.arch_lr, b1=0.5, b2=0.999,
                        weight_decay=options.arch_weight_decay)

  def init(key):
    params = model.init({'params': key}, jnp.zeros((1, max_len, len(data.vocab_sizes)),
                                                   jnp.int32), train=False)['params']
    params = dict(params)
    arch = {ARCH_PARAM: params.pop(ARCH_PARAM)}
    return SearchState(step=jnp.zeros((), jnp.int32), weights=params, arch=arch,
                       weights_opt_state=weights_tx.init(params),
                       arch_opt_state=arch_tx.init(arch),
                       rng=jax.random.key_data(jax.random.fold_in(key, 1)))

  state = jax.jit(init, out_shardings=replicated)(jax.random.key(config.seed))
  loss_fn = functools.partial(train.batch_loss, model=model, loss=config.train.loss,
                              num_negatives=config.train.num_negatives,
                              sequence_targets=False)
  step_fn = jax.jit(
      mesh_lib.on_mesh(functools.partial(
          search_step, loss_fn=loss_fn, weights_tx=weights_tx, arch_tx=arch_tx,
          second_order=options.order == 'second', xi=options.xi or config.train.lr,
          length_cost=np.asarray(candidates, np.float32) / max(candidates),
          length_penalty=options.length_penalty), mesh),
      in_shardings=(replicated, batch_sharding, batch_sharding),
      out_shardings=(replicated, replicated), donate_argnums=0)

  def valid_stream(step: int):
    """The validation batches from the one consumed at search step `step` on."""
    epoch, offset = divmod(step, valid_batches.steps_per_epoch)
    while True:
      yield from valid_batches.epoch(epoch, offset)
      epoch, offset = epoch + 1, 0

  weights_of = lambda state: jax.nn.softmax(state.arch[ARCH_PARAM]).tolist()
  meta = dict(step=0, epoch=0, step_in_epoch=0, search_seconds=0.0,
              trajectory=[dict(step=0, weights=weights_of(state))])
  manager = None
  if checkpoint_dir:  # The search resumes exactly, as training does.
    manager = ocp.CheckpointManager(checkpoint_dir, options=ocp.CheckpointManagerOptions(
        max_to_keep=1, create=True))
    restored = train.Checkpoints.restore(manager, state)
    if restored is not None:
      state, meta = restored
      print(f'Resumed the search from step {meta["step"]}', file=sys.stderr)
  valid = valid_stream(meta['step'])
  sync_every = train.steps_between_syncs(mesh, config.train.log_every_steps)
  trajectory = meta['trajectory']
  while meta['epoch'] < options.search_epochs:
    started = time.perf_counter()
    for batch in train_batches.epoch(meta['epoch'], meta['step_in_epoch']):
      state, values = step_fn(state, jax.device_put(batch, batch_sharding),
                              jax.device_put(next(valid), batch_sharding))
      meta['step'] += 1
      meta['step_in_epoch'] += 1
      step = meta['step']
      if step % sync_every == 0:
        jax.block_until_ready(values)
      if step % config.train.log_every_steps == 0 or step == total_steps:
        trajectory.append(dict(step=step, weights=weights_of(state),
                               **{k: float(v) for k, v in values.items()}))
      if (manager and step % config.train.checkpoint_every_steps == 0 and
          meta['step_in_epoch'] < train_batches.steps_per_epoch):
        meta['search_seconds'] += time.perf_counter() - started
        started = time.perf_counter()
        train.Checkpoints.save(manager, state, meta)
    jax.block_until_ready(state)
    meta['search_seconds'] += time.perf_counter() - started
    meta['epoch'], meta['step_in_epoch'] = meta['epoch'] + 1, 0
    print(f'search epoch {meta["epoch"]}: softmax(alpha) over k={candidates}: '
          + ' '.join(f'{w:.3f}' for w in trajectory[-1]['weights']), file=sys.stderr)
    if manager:
      train.Checkpoints.save(manager, state, meta)
  if manager:
    manager.wait_until_finished()
    manager.close()
  final = np.asarray(state.arch[ARCH_PARAM])
  return dict(candidates=list(candidates), chosen=int(candidates[int(np.argmax(final))]),
              alpha=final.tolist(), weights=jax.nn.softmax(final).tolist(),
              order=options.order, length_penalty=options.length_penalty, steps=meta['step'],
              search_seconds=meta['search_seconds'], trajectory=trajectory)


def plot_search(result: dict[str, Any], path: str) -> None:
  """softmax(α) of every candidate against the search step, as a PNG."""
  import matplotlib
  matplotlib.use('Agg')  # No display; writes files only.
  import matplotlib.pyplot as plt

  steps = [point['step'] for point in result['trajectory']]
  weights = np.array([point['weights'] for point in result['trajectory']])
  figure, axes = plt.subplots(figsize=(6, 3.5))
  for i, k in enumerate(result['candidates']):
    axes.plot(steps, weights[:, i], label=f'k = {k}' + (' (chosen)' if k == result['chosen']
                                                        else ''))
  axes.set_xlabel('search step')
  axes.set_ylabel('softmax(α)')
  axes.set_title(f'short-term length search ({result["order"]} order)')
  axes.legend(fontsize='small')
  figure.tight_layout()
  figure.savefig(path + '.tmp.png', dpi=120)
  plt.close(figure)
  os.replace(path + '.tmp.png', path)


def _write_json(path: str, value: Any) -> None:
  with open(path + '.tmp', 'w') as f:
    json.dump(value, f, indent=1)
  os.replace(path + '.tmp', path)  # A killed search never leaves half a result.


def resolve_architecture(config: ml_collections.ConfigDict,
                         workdir: str) -> ml_collections.ConfigDict:
  """The config to train: `config` itself unless it has an `automlp` section; else a copy
  whose `model.short_lengths` is the one k, searched for (`automlp.search`) or given
  (`automlp.short_length`)."""
  if 'automlp' not in config:
    return config
  options = config.automlp
  if options.search:
    directory = os.path.join(workdir, 'search')
    path = os.path.join(directory, 'result.json')
    if os.path.exists(path):
      with open(path) as f:
        result = json.load(f)
      if result['candidates'] != list(config.model.short_lengths):
        raise ConfigError(f'{path} holds a search over k in {result["candidates"]}, but '
                          f'config.model.short_lengths is {tuple(config.model.short_lengths)}; '
                          'use a new workdir')
    else:
      result = run_search(config, os.path.join(os.path.abspath(directory), 'checkpoints'))
      plot_search(result, os.path.join(directory, 'alpha.png'))
      _write_json(path, result)
    print(f'short-term length search chose k = {result["chosen"]} among '
          f'{result["candidates"]} in {result["search_seconds"]:.0f} s', file=sys.stderr)
    length = result['chosen']
  elif options.short_length:
    length = options.short_length
  elif len(config.model.short_lengths) == 1:
    length = config.model.short_lengths[0]
  else:
    raise ConfigError('with config.automlp.search=False, set config.automlp.short_length '
                      '(the short-term length k to train with)')
  chosen = copy.deepcopy(config)
  chosen.model.short_lengths = (int(length),)
  chosen.automlp.search, chosen.automlp.short_length = False, int(length)
  return chosen
