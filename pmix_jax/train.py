"""The one training loop for every model: data parallel, jitted, checkpointed, resumable.

Parameters and optimizer state are replicated over a 1-D device mesh ('data') and every batch
is sharded along it; `jax.jit` inserts the gradient all-reduce. A training run is a pure
function of the config: the batch order of epoch e depends on (seed, e), dropout and negative
samples on (seed, step), so a run resumed from a checkpoint ends exactly where an
uninterrupted run would.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import os
import platform
import sys
import time
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import tqdm
import yaml
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from pmix_jax import data as data_lib
from pmix_jax import mesh as mesh_lib
from pmix_jax import evaluation, losses, models
from pmix_jax.data import batches as batches_lib
from pmix_jax.errors import ConfigError

@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array  # Raw key data of the run's base key (orbax saves plain arrays).


def make_optimizer(config: ml_collections.ConfigDict,
                   total_steps: int) -> optax.GradientTransformation:
  warmup = min(config.warmup_steps, max(total_steps - 1, 0))
  schedules = dict(
      constant=lambda: optax.join_schedules(
          [optax.linear_schedule(0.0, config.lr, warmup), optax.constant_schedule(config.lr)],
          [warmup]),
      warmup_cosine=lambda: optax.warmup_cosine_decay_schedule(
          0.0, config.lr, warmup, max(total_steps, warmup + 1)),
      warmup_linear=lambda: optax.join_schedules(
          [optax.linear_schedule(0.0, config.lr, warmup),
           optax.linear_schedule(config.lr, 0.0, max(total_steps - warmup, 1))], [warmup]))
  if config.schedule not in schedules:
    raise ConfigError(f'unknown config.train.schedule {config.schedule!r}; '
                      f'known: {sorted(schedules)}')
  schedule = schedules[config.schedule]()
  if config.optimizer == 'adam':
    if config.weight_decay:
      raise ConfigError("config.train.weight_decay needs config.train.optimizer='adamw'")
    optimizer = optax.adam(schedule)
  elif config.optimizer == 'adamw':
    optimizer = optax.adamw(schedule, weight_decay=config.weight_decay)
  else:
    raise ConfigError(f"unknown config.train.optimizer {config.optimizer!r}; known: "
                      "['adam', 'adamw']")
  if config.grad_clip_norm > 0:
    return optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), optimizer)
  return optimizer


def batch_loss(params: Any, batch: dict[str, jax.Array], key: jax.Array, *, model: nn.Module,
               loss: str, num_negatives: int, sequence_targets: bool) -> jax.Array:
  """The training loss of `params` on `batch`, with dropout and negatives drawn from `key`."""
  dropout_key, negatives_key = jax.random.split(key)
  rngs = {'dropout': dropout_key, 'negatives': negatives_key}
  if hasattr(model, 'training_loss'):  # The model's own training signal (e.g. masking).
    return model.apply({'params': params}, batch, loss=loss, num_negatives=num_negatives,
                       rngs=rngs, method='training_loss')
  hidden, table = model.apply({'params': params}, batch['inputs'], train=True, rngs=rngs)
  targets = batch['targets']
  if not sequence_targets:
    hidden, targets = hidden[:, -1:], targets[:, None]
  return losses.LOSSES[loss](hidden, table, targets, negatives_key, num_negatives)


def train_step(state: TrainState, batch: dict[str, jax.Array], *, model: nn.Module,
               tx: optax.GradientTransformation, loss: str, num_negatives: int,
               sequence_targets: bool) -> tuple[TrainState, jax.Array]:
  """One optimizer step on a global batch; returns the new state and the batch's mean loss."""
  key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
  value, grads = jax.value_and_grad(batch_loss)(
      state.params, batch, key, model=model, loss=loss, num_negatives=num_negatives,
      sequence_targets=sequence_targets)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                       opt_state=opt_state), value


def steps_between_syncs(mesh: Mesh, log_every_steps: int) -> int:
  """How many steps the host may queue before waiting for the devices."""
  # Fake CPU devices can deadlock when many collective steps are queued: sync every step.
  return 1 if mesh.devices.size > 1 and mesh.devices.flat[0].platform == 'cpu' else (
      log_every_steps)


def make_score_fn(model: nn.Module) -> evaluation.ScoreFn:
  """`(params, inputs [B, L, F]) -> [B, V]` scores of every item after the last behavior;
  `(params, inputs, candidates [B, C]) -> [B, C]` those of the candidates only."""
  def score(params, inputs, candidates=None):
    variables = {'params': params}
    if candidates is not None and hasattr(model, 'score_candidates'):
      return model.apply(variables, inputs, candidates, method='score_candidates')
    if hasattr(model, 'score_items'):  # A target-aware user state (MGNM's attention).
      return evaluation.select(model.apply(variables, inputs, method='score_items'),
                               candidates)
    hidden, table = model.apply(variables, inputs, train=False)
    if candidates is None:
      return hidden[:, -1] @ table.T
    return jnp.einsum('bd,bcd->bc', hidden[:, -1], table[candidates])
  return score


def load_or_sample_negatives(workdir: str, data: data_lib.SequenceData, split: str,
                             config: ml_collections.ConfigDict) -> np.ndarray | None:
  """The sampled protocol's negatives for `split`: drawn once from `negatives_seed` and kept
  in `workdir/negatives/`, so that a resumed run scores the same candidates (and, being
  deterministic, runs of other models with the same seed draw the same ones)."""
  kind, _ = evaluation.parse_protocol(config.protocol)
  if kind == 'full':
    return None
  name = f'{split}-{config.protocol.replace(":", "")}-seed{config.negatives_seed}.npy'
  path = os.path.join(workdir, 'negatives', name)
  if os.path.exists(path):
    return np.load(path)
  negatives = evaluation.sample_negatives(data, split, config.protocol, config.negatives_seed)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + '.tmp', 'wb') as f:
    np.save(f, negatives)
  os.replace(path + '.tmp', path)  # Never a half-written file.
  return negatives


def popularity_score(counts: jax.Array, inputs: jax.Array,
                     candidates: jax.Array | None = None) -> jax.Array:
  """The most-popular ranker as a score function: training counts, the same for every user."""
  return evaluation.select(jnp.broadcast_to(counts, (inputs.shape[0], counts.shape[0])),
                           candidates)


class Checkpoints:
  """`latest/` keeps the newest `keep_latest` states, `best/` the best on validation."""

  def __init__(self, directory: str, keep_latest: int):
    options = lambda keep: ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    self.latest = ocp.CheckpointManager(os.path.join(directory, 'latest'),
                                        options=options(keep_latest))
    self.best = ocp.CheckpointManager(os.path.join(directory, 'best'), options=options(1))

  @staticmethod
  def save(manager: ocp.CheckpointManager, state: TrainState, meta: dict) -> None:
    step = int(meta['step'])
    if step in manager.all_steps():
      return  # Written before a kill; the run is deterministic, so it holds the same state.
    # Orbax writes in the background: give it a snapshot of `meta`, which the loop mutates.
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                               meta=ocp.args.JsonSave(copy.deepcopy(meta))))

  @staticmethod
  def restore(manager: ocp.CheckpointManager, like: TrainState
              ) -> tuple[TrainState, dict] | None:
    step = manager.latest_step()
    if step is None:
      return None
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), like)
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    return restored['state'], dict(restored['meta'])

  def close(self) -> None:
    self.latest.wait_until_finished()
    self.best.wait_until_finished()
    self.latest.close()
    self.best.close()


# Fields that change nothing a run computes: a run may be resumed, rescored or reused under
# other values of these.
BOOKKEEPING_FIELDS = frozenset({'train.progress_bar', 'data.cache_dir', 'checkpoint.keep_latest',
                                'eval.also_protocols'})
# Fields added after runs were stored, with the value that computes what those runs
# computed: a stored config without one of them counts as having that value.
LATER_FIELDS = {'data.length_buckets': (), 'train.group_by_length': 0}


def _leaves(tree: dict[str, Any], prefix: str = '') -> dict[str, Any]:
  leaves = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      leaves.update(_leaves(value, f'{prefix}{key}.'))
    else:
      leaves[prefix + key] = value
  return leaves


def host() -> dict[str, Any]:
  """Where this process computes: XLA's results depend on the backend, the processor it
  compiled for and, on a CPU, the cores the process may use (its thread pool splits
  reductions by them), so a run's numbers carry this record: that of the process that
  wrote its results.json (a run resumed elsewhere may have trained partly on another)."""
  device = jax.devices()[0]
  processor = platform.processor() or platform.machine()
  if os.path.exists('/proc/cpuinfo'):
    with open('/proc/cpuinfo') as f:
      names = [line.split(':', 1)[1].strip() for line in f if line.startswith('model name')]
    processor = names[0] if names else processor
  cores = (len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity')
           else os.cpu_count())
  return dict(backend=device.platform, device_kind=device.device_kind, processor=processor,
              cpu_cores=cores, jax=jax.__version__)


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config the run in `workdir` was started with: its config.txt, which is
  `str(config)`, YAML with Python tuples."""
  path = os.path.join(workdir, 'config.txt')
  if not os.path.exists(path):
    raise ConfigError(f'{path} does not exist: {workdir} holds no run')
  with open(path) as f:
    try:
      return ml_collections.ConfigDict(yaml.full_load(f))
    except (yaml.YAMLError, TypeError, ValueError) as error:  # Not a dict, or not YAML.
      raise ConfigError(f'{path}: not a config written by pmix_jax: {error}') from None


def config_differences(config: ml_collections.ConfigDict, workdir: str) -> list[str]:
  """How `config` differs from the config the run in `workdir` was started with (its
  config.txt), bookkeeping fields aside: one 'field: stored -> given' line per field; none
  when `workdir` holds no run yet. A field on one side only counts as a difference, but for
  `LATER_FIELDS` at their old value."""
  if not os.path.exists(os.path.join(workdir, 'config.txt')):
    return []
  stored = {**LATER_FIELDS, **_leaves(load_config(workdir).to_dict())}
  given = _leaves(yaml.full_load(str(config)))  # Both sides through the same YAML load.
  missing = '(absent)'
  fields = sorted((stored.keys() | given.keys()) - BOOKKEEPING_FIELDS)
  return [f'{field}: {stored.get(field, missing)!r} -> {given.get(field, missing)!r}'
          for field in fields if stored.get(field, missing) != given.get(field, missing)]


def check_same_run(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Refuses to resume, rescore or reuse the run in `workdir` under another config: its
  checkpoints and results belong to the config in its config.txt."""
  differences = config_differences(config, workdir)
  if differences:
    raise ConfigError(
        f'{os.path.join(workdir, "config.txt")} holds a run of another config; use a new '
        'workdir, or the stored values. Differences (stored -> given):\n  ' +
        '\n  '.join(differences))


def check_config(config: ml_collections.ConfigDict, model: nn.Module,
                 num_devices: int) -> None:
  train, evaluation_config = config.train, config.eval
  if train.targets not in ('prefix', 'seq2seq'):
    raise ConfigError(f"config.train.targets must be 'prefix' or 'seq2seq', "
                      f'not {train.targets!r}')
  if train.targets == 'seq2seq' and not (model.causal or hasattr(model, 'training_loss')):
    raise ConfigError(f'model {config.model.name!r} is not causal: it cannot be trained on '
                      "every position; use config.train.targets='prefix'")
  if not 0 <= train.window_stride <= config.data.max_len:
    raise ConfigError('config.train.window_stride must lie in [0, config.data.max_len]')
  buckets = config.data.length_buckets
  if not all(isinstance(b, int) and b > 0 for b in buckets):  # Wider than max_len: max_len.
    raise ConfigError(f'config.data.length_buckets={tuple(buckets)} must be positive widths')
  if train.group_by_length < 0:
    raise ConfigError('config.train.group_by_length must be at least 0')
  if train.num_epochs < 1:
    raise ConfigError('config.train.num_epochs must be at least 1')
  if train.loss not in losses.LOSSES:
    raise ConfigError(f'unknown config.train.loss {train.loss!r}; known: '
                      f'{sorted(losses.LOSSES)}')
  for name, size in [('train.batch_size', train.batch_size),
                     ('eval.batch_size', evaluation_config.batch_size)]:
    if size <= 0 or size % num_devices:
      raise ConfigError(f'config.{name}={size} must be a positive multiple of the number '
                        f'of devices ({num_devices})')
  for protocol in evaluation_config.also_protocols:
    evaluation.parse_protocol(protocol)  # Fails on an unknown protocol before training.
  protocol_kind, _ = evaluation.parse_protocol(evaluation_config.protocol)
  if protocol_kind != 'full' and evaluation_config.mask_history:
    raise ConfigError('config.eval.mask_history applies to full ranking; for sampled '
                      "negatives outside the history use an ':unseen' protocol, e.g. "
                      "'popularity:100:unseen'")
  metric_names = list(evaluation.metrics_from_ranks(np.zeros(1), tuple(evaluation_config.ks)))
  if protocol_kind != 'full':
    metric_names.append('GAUC')
  if evaluation_config.early_stopping_metric not in metric_names:
    raise ConfigError(f'config.eval.early_stopping_metric '
                      f'{evaluation_config.early_stopping_metric!r} is not one of '
                      f'{sorted(metric_names)}')
  if not 0.0 <= evaluation_config.tie_share <= 1.0:
    raise ConfigError('config.eval.tie_share must lie in [0, 1]')


def format_metrics(results: dict[str, dict[str, float]], ks: tuple[int, ...]) -> str:
  """A plain-text table: one row per split and metric, one column per cutoff K."""
  lines = [f'{"":<15}' + ''.join(f'{"@" + str(k):>9}' for k in ks)]
  for split, metrics in results.items():
    for name in ('HR', 'NDCG', 'MRR'):
      lines.append(f'{split + " " + name:<15}' +
                   ''.join(f'{metrics[f"{name}@{k}"]:>9.4f}' for k in ks))
    if 'GAUC' in metrics:
      lines.append(f'{split + " GAUC":<15}{metrics["GAUC"]:>9.4f}')
  return '\n'.join(lines)


def _tag(metric: str) -> str:
  return metric.replace('@', '_at_')  # TensorBoard tags cannot hold '@'.


def _summary_writer(workdir: str):
  import tensorboardX  # Writes TensorBoard event files without TensorFlow.
  return tensorboardX.SummaryWriter(os.path.join(workdir, 'tensorboard'))


@dataclasses.dataclass
class Setup:
  """Everything a run computes with, built from the config: data, model, state, steps."""
  data: data_lib.SequenceData
  max_len: int
  model: nn.Module
  mesh: Mesh
  train_batches: batches_lib.TrainBatches
  state: TrainState
  step_fn: Callable  # (state, batch) -> (state, loss); jitted, donates the state.
  score_fn: evaluation.ScoreFn

  @classmethod
  def create(cls, config: ml_collections.ConfigDict) -> Setup:
    data = data_lib.load(config.data)
    max_len = config.data.max_len
    model = models.build(config.model, data.vocab_sizes, max_len)
    mesh = mesh_lib.data_mesh()
    check_config(config, model, mesh.devices.size)
    replicated = NamedSharding(mesh, P())
    batch_sharding = NamedSharding(mesh, P(mesh_lib.DATA_AXIS))
    sequence_targets = config.train.targets == 'seq2seq'
    rows = (batches_lib.window_rows(data, max_len, config.train.window_stride or max_len)
            if sequence_targets else batches_lib.prefix_rows(data))
    train_batches = batches_lib.TrainBatches(
        data, rows, max_len, config.train.batch_size, sequence_targets, config.seed,
        tuple(config.data.length_buckets), config.train.group_by_length)
    tx = make_optimizer(config.train, train_batches.steps_per_epoch * config.train.num_epochs)

    def init(key):
      params = model.init({'params': key}, jnp.zeros((1, max_len, len(data.vocab_sizes)),
                                                     jnp.int32), train=False)['params']
      return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                        opt_state=tx.init(params),
                        rng=jax.random.key_data(jax.random.fold_in(key, 1)))

    state = jax.jit(init, out_shardings=replicated)(jax.random.key(config.seed))
    step_fn = jax.jit(
        mesh_lib.on_mesh(functools.partial(
            train_step, model=model, tx=tx, loss=config.train.loss,
            num_negatives=config.train.num_negatives, sequence_targets=sequence_targets), mesh),
        in_shardings=(replicated, batch_sharding), out_shardings=(replicated, replicated),
        donate_argnums=0)
    return cls(data, max_len, model, mesh, train_batches, state, step_fn,
               mesh_lib.on_mesh(make_score_fn(model), mesh))


def evaluator(config: ml_collections.ConfigDict, setup: Setup, workdir: str, split: str,
               protocol: str | None = None) -> evaluation.Evaluator:
  """The evaluator of `split` under `protocol` (default: config.eval.protocol)."""
  eval_config = ml_collections.ConfigDict(
      {**config.eval.to_dict(), 'protocol': protocol or config.eval.protocol})
  return evaluation.Evaluator(
      setup.data, split, setup.max_len, config.eval.batch_size,
      config.eval.mask_history and eval_config.protocol == 'full', config.eval.tie_share,
      tuple(config.eval.ks), setup.mesh,
      negatives=load_or_sample_negatives(workdir, setup.data, split, eval_config),
      length_buckets=tuple(config.data.length_buckets))


def _scores(config: ml_collections.ConfigDict, setup: Setup, workdir: str, params: Any,
            protocol: str, validate: evaluation.Evaluator | None = None) -> dict[str, Any]:
  """Validation and test metrics of `params` under `protocol`, and the most-popular
  ranker's test metrics on the same candidates; `validate`: the validation split's
  evaluator under `protocol` when there is one already (compiled)."""
  validate = validate or evaluator(config, setup, workdir, 'valid', protocol)
  test = evaluator(config, setup, workdir, 'test', protocol)
  counts = jnp.asarray(setup.data.train_item_counts(), jnp.float32)
  return dict(valid=validate(setup.score_fn, params), test=test(setup.score_fn, params),
              popularity=dict(test=test(popularity_score, counts)))


def rescore(config: ml_collections.ConfigDict, workdir: str,
            protocols: tuple[str, ...]) -> dict[str, Any]:
  """Scores the chosen (best) checkpoint of a finished run in `workdir` under more
  `protocols` and adds them to its results.json's `also_protocols` (those already there are
  not recomputed). `config` must be the run's. Returns the updated results."""
  path = os.path.join(workdir, 'results.json')
  if not os.path.exists(path):
    raise ConfigError(f'{path} does not exist: only a finished run can be rescored')
  check_same_run(config, workdir)
  with open(path) as f:
    results = json.load(f)
  missing = [p for p in protocols if p not in results['also_protocols']]
  for protocol in missing:
    evaluation.parse_protocol(protocol)
  if not missing:
    return results
  setup = Setup.create(config)
  checkpoints = Checkpoints(os.path.join(os.path.abspath(workdir), 'checkpoints'),
                            config.checkpoint.keep_latest)
  restored = Checkpoints.restore(checkpoints.best, setup.state)
  checkpoints.close()
  if restored is None:
    raise ConfigError(f'no best checkpoint in {workdir}/checkpoints/best')
  for protocol in missing:
    results['also_protocols'][protocol] = _scores(config, setup, workdir,
                                                  restored[0].params, protocol)
  with open(path + '.tmp', 'w') as f:
    json.dump(results, f, indent=1)
  os.replace(path + '.tmp', path)
  return results


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains `config.model` on `config.data`, evaluates, and writes everything to `workdir`.

  Resumes from `workdir/checkpoints/latest` when present. Returns the final results, also
  written to `workdir/results.json`.
  """
  check_same_run(config, workdir)
  setup = Setup.create(config)  # Checks the config first: a bad one leaves no workdir behind.
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'config.txt'), 'w') as f:
    f.write(str(config))
  data, state, step_fn = setup.data, setup.state, setup.step_fn
  train_batches, score_fn, devices = setup.train_batches, setup.score_fn, setup.mesh.devices
  steps_per_epoch = train_batches.steps_per_epoch
  total_steps = steps_per_epoch * config.train.num_epochs
  batch_sharding = NamedSharding(setup.mesh, P(mesh_lib.DATA_AXIS))
  validate = evaluator(config, setup, workdir, 'valid')

  checkpoints = Checkpoints(os.path.join(os.path.abspath(workdir), 'checkpoints'),
                            config.checkpoint.keep_latest)
  meta = dict(step=0, epoch=0, step_in_epoch=0, best_value=None, best_step=None,
              best_epoch=None, evals_since_best=0, stopped=False, train_seconds=0.0,
              train_losses=[], valid_history=[])
  restored = Checkpoints.restore(checkpoints.latest, state)
  if restored is not None:
    state, meta = restored
    print(f'Resumed from step {meta["step"]} (epoch {meta["epoch"]}) in {workdir}',
          file=sys.stderr)

  writer = _summary_writer(workdir)
  num_devices = devices.size
  sync_every = steps_between_syncs(setup.mesh, config.train.log_every_steps)
  metric_name = config.eval.early_stopping_metric
  progress = tqdm.tqdm(total=total_steps, initial=int(meta['step']), unit='step',
                       dynamic_ncols=True, disable=not config.train.progress_bar,
                       file=sys.stderr)
  pending_losses: list[jax.Array] = []

  def log_losses(step: int) -> None:
    if pending_losses:
      loss = float(np.mean(np.asarray(jnp.stack(pending_losses))))
      pending_losses.clear()
      meta['train_losses'].append([step, loss])
      writer.add_scalar('train/loss', loss, step)
      progress.set_postfix(loss=f'{loss:.4f}', epoch=meta['epoch'], refresh=False)

  while meta['epoch'] < config.train.num_epochs and not meta['stopped']:
    epoch = meta['epoch']
    started = time.perf_counter()
    for batch in train_batches.epoch(epoch, meta['step_in_epoch']):
      state, loss = step_fn(state, jax.device_put(batch, batch_sharding))
      pending_losses.append(loss)
      meta['step'] += 1
      meta['step_in_epoch'] += 1
      progress.update()
      if meta['step'] % sync_every == 0:
        jax.block_until_ready(loss)
      if meta['step'] % config.train.log_every_steps == 0:
        log_losses(meta['step'])
      if (meta['step'] % config.train.checkpoint_every_steps == 0 and
          meta['step_in_epoch'] < steps_per_epoch):
        log_losses(meta['step'])
        meta['train_seconds'] += time.perf_counter() - started
        started = time.perf_counter()
        Checkpoints.save(checkpoints.latest, state, meta)
    jax.block_until_ready(state)
    log_losses(meta['step'])
    meta['train_seconds'] += time.perf_counter() - started
    meta['epoch'], meta['step_in_epoch'] = epoch + 1, 0

    if meta['epoch'] % config.eval.every_epochs == 0 or meta['epoch'] == config.train.num_epochs:
      metrics = validate(score_fn, state.params)
      for name, value in metrics.items():
        writer.add_scalar(f'valid/{_tag(name)}', value, meta['step'])
      meta['valid_history'].append(dict(epoch=meta['epoch'], step=meta['step'],
                                        train_seconds=meta['train_seconds'], **metrics))
      progress.write(f'epoch {meta["epoch"]} step {meta["step"]}: valid '
                     + ' '.join(f'{k}={metrics[k]:.4f}' for k in (metric_name, 'HR@10')
                                if k in metrics))
      if meta['best_value'] is None or metrics[metric_name] > meta['best_value']:
        meta.update(best_value=metrics[metric_name], best_step=meta['step'],
                    best_epoch=meta['epoch'], evals_since_best=0)
        Checkpoints.save(checkpoints.best, state, meta)  # Before `latest`: see `save`.
      else:
        meta['evals_since_best'] += 1
        if config.eval.patience and meta['evals_since_best'] >= config.eval.patience:
          meta['stopped'] = True
    Checkpoints.save(checkpoints.latest, state, meta)
  progress.close()

  best_state, _ = Checkpoints.restore(checkpoints.best, state)
  checkpoints.close()
  final = _scores(config, setup, workdir, best_state.params, config.eval.protocol, validate)
  popularity = final.pop('popularity')['test']
  also = {protocol: _scores(config, setup, workdir, best_state.params, protocol)
          for protocol in config.eval.also_protocols}
  for split, metrics in final.items():
    for name, value in metrics.items():
      writer.add_scalar(f'final_{split}/{_tag(name)}', value, meta['best_step'])
  writer.close()
  results = dict(
      model=config.model.name, dataset=data.source, data_stats=data.stats(),
      protocol=config.eval.protocol, mask_history=config.eval.mask_history,
      tie_share=config.eval.tie_share, num_devices=num_devices, host=host(),
      num_params=int(sum(x.size for x in jax.tree.leaves(best_state.params))),
      best_epoch=meta['best_epoch'], best_step=meta['best_step'], epochs_run=meta['epoch'],
      early_stopped=meta['stopped'], train_seconds=meta['train_seconds'],
      train_losses=meta['train_losses'], valid_history=meta['valid_history'],
      baselines=dict(popularity=dict(test=popularity)), also_protocols=also, **final)
  path = os.path.join(workdir, 'results.json')
  with open(path + '.tmp', 'w') as f:
    json.dump(results, f, indent=1)
  os.replace(path + '.tmp', path)  # A killed run never leaves half a results file.
  print(f'{config.model.name} on {data.source}: best epoch {meta["best_epoch"]}, protocol '
        f'{config.eval.protocol} ({data.num_items} items)')
  print(format_metrics({**final, 'test pop.': popularity}, tuple(config.eval.ks)))
  for protocol, scores in also.items():
    print(f'the same checkpoint, protocol {protocol}:')
    print(format_metrics({'valid': scores['valid'], 'test': scores['test'],
                          'test pop.': scores['popularity']['test']}, tuple(config.eval.ks)))
  return results
