r"""Short MGNM runs that change one thing at a time, to find where MGNM falls behind.

    python -m experiments.mgnm.probes --root=/tmp/mgnm_probes --num_epochs=4 \
        --probes="mgnm,model.use_bilstm=False,model.routing_iterations=1"
    python -m experiments.mgnm.probes --root=experiments/mgnm/probes --report_only

A probe is the MGNM table's run (Toys, seed 0, `experiments/mgnm/table2.py`'s settings:
`surge` preset, per-user 70/10/20 split, history 100, `grouped:100`, d = 16, lr 1e-3) with
some config values changed: `mgnm` changes none, `variant:NAME` is `configs/mgnm.py:NAME`,
and `a.b=V+c.d=W` sets config values (V read as a Python literal, else as a string). Each
trains `--num_epochs` epochs (or its own `train.num_epochs`) without early stopping, in
ROOT/<probe>, and is archived (its JSON records and config.txt) under `--archive` as soon as
it finishes; a finished probe is not rerun (`--rediagnose` examines its kept checkpoints
again). A finished run of the same config elsewhere can be examined as a probe by copying
its config.txt and results.json into ROOT/<probe> and linking its checkpoints there; so the
table's seed-0 MGNM run is the probe `train.num_epochs=50` (its schedule, under the probes'
default of 4 epochs).

Each probe's best checkpoint is then examined on validation rows (`diagnosis.json`,
`diagnose`): whether its interests depend on the user, whether Eq. 10's BiLSTM term drowns
Z, and, with graph levels, whether the levels score differently.

The report (`PROBES.md` beside this file) gives every probe's validation GAUC per epoch and
its diagnosis. Probes are diagnostics on validation, not results: the table's runs are
table2.py's.
"""

from __future__ import annotations

import ast
import json
import os

import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

from experiments import archive
from experiments.mgnm import collapse, table2
from experiments.pyramid_mixer import report as table1_report
from experiments.pyramid_mixer import table1
from pmix_jax import train
from pmix_jax.data import batches

_PROBES = flags.DEFINE_list('probes', ['mgnm'], 'Probes: mgnm | variant:NAME | a.b=V+c.d=W.')
_REPORT = flags.DEFINE_string('report', 'experiments/mgnm/PROBES.md', 'The report written.')
_REPORT_ONLY = flags.DEFINE_bool('report_only', False, 'Only write the report from --root.')
_REDIAGNOSE = flags.DEFINE_bool('rediagnose', False,
                                "Examine finished probes' checkpoints again (a newer diagnosis).")

# The MGNM table's settings, with no extra protocol, a few epochs and its own archive.
SETTINGS = {**table2.DEFAULTS, 'also_protocols': [], 'num_epochs': 4,
            'archive': 'experiments/mgnm/probes'}


def probe_config(probe: str, dataset: str, epochs: int):
  """The table's seed-0 MGNM config (its first grid point) on `dataset` with `probe`'s
  changes."""
  variant = probe.partition(':')[2] if probe.startswith('variant:') else ''
  config = table1.run_config(dataset, f'mgnm:{variant}' if variant else 'mgnm',
                             float(flags.FLAGS.lrs[0]), float(flags.FLAGS.dropouts[0]),
                             int(flags.FLAGS.hiddens[0]), 0)
  config.train.num_epochs = epochs  # A probe's own train.num_epochs wins.
  config.eval.patience = 0
  if probe != 'mgnm' and not variant:
    for change in probe.split('+'):
      path, _, value = change.partition('=')
      *parents, key = path.split('.')
      node = config
      for parent in parents:
        node = node.get(parent, {})
      if key not in node:  # A mistyped key would otherwise be a silent no-op.
        raise app.UsageError(f'probe {probe!r}: the config has no {path!r}')
      try:
        node[key] = ast.literal_eval(value)
      except (ValueError, SyntaxError):  # A bare word: a string value.
        node[key] = value
  return config


def diagnose(config, workdir: str, rows: int = 2000) -> dict:
  """Of the best checkpoint, on (at most `rows`, evenly spread) validation rows: whether the
  interests collapsed (the same for every user, or K times the same) and, with graph levels,
  how alike the levels score: their scores' correlation with level 0's, and the validation
  GAUC with the levels pooled differently."""
  setup = train.Setup.create(config)
  checkpoints = train.Checkpoints(os.path.join(os.path.abspath(workdir), 'checkpoints'), 1)
  params = train.Checkpoints.restore(checkpoints.best, setup.state)[0].params
  checkpoints.close()
  valid_rows = batches.eval_rows(setup.data, 'valid')
  valid_rows = valid_rows.take(np.arange(0, len(valid_rows), max(1, len(valid_rows) // rows)))
  inputs = jnp.asarray(batches.gather_inputs(setup.data, valid_rows, setup.max_len))
  (q, _, table), state = setup.model.apply({'params': params}, inputs, train=False,
                                           method='interests', mutable=['intermediates'])
  q = np.asarray(q)  # [B, levels, K, D]
  capsules = np.asarray(state['intermediates']['interests']['capsules'][0])
  capsules = capsules.reshape(q.shape[0], q.shape[1], *capsules.shape[1:])[:, 0]
  found = dict(
      rows=int(q.shape[0]),
      capsules_cosine_to_mean_over_users=collapse.cosine_to_mean(capsules),
      interests_cosine_to_mean_over_users=collapse.cosine_to_mean(q[:, 0]),
      interests_cosine_within_user=collapse.pairwise_cosine(q[:, 0]))
  if 'z_and_bilstm_term' in state['intermediates']['interests']:
    sown = state['intermediates']['interests']['z_and_bilstm_term'][0]
    found.update(collapse.bilstm_share(sown, q.shape[:2], np.asarray(inputs[..., 0] > 0)))
  if q.shape[1] == 1:
    return found
  sample = jnp.asarray(q[:200])
  scores = np.asarray(setup.model.level_scores(  # [200, levels, V]
      sample, jnp.broadcast_to(table, (sample.shape[0], *table.shape))))
  found['level_score_correlation_with_level_0'] = [
      float(np.corrcoef(scores[:, 0].ravel(), scores[:, level].ravel())[0, 1])
      for level in range(q.shape[1])]
  pooled = {}
  for name, changes in ([('max', {}), ('sum', dict(pooling='sum'))]
                        + [(f'max over levels 0-{n - 1}', dict(num_levels=n))
                           for n in range(1, q.shape[1])]):
    changed = config.copy_and_resolve_references()
    changed.model.update(changes)
    changed_setup = train.Setup.create(changed)
    valid = train.evaluator(changed, changed_setup, workdir, 'valid')
    pooled[name] = float(valid(changed_setup.score_fn, params)['GAUC'])
  found['valid_gauc_by_level_pooling'] = pooled
  return found


def run_probe(root: str, probe: str, dataset: str, epochs: int) -> None:
  workdir = os.path.join(root, probe.replace(':', '-'))
  config = probe_config(probe, dataset, epochs)
  if not os.path.exists(os.path.join(workdir, 'results.json')):
    print(f'--- probe {probe}, {config.train.num_epochs} epochs', flush=True)
    train.train_and_evaluate(config, workdir)
  train.check_same_run(config, workdir)  # A finished probe is reused only if it ran this.
  path = os.path.join(workdir, 'diagnosis.json')
  if _REDIAGNOSE.value or not os.path.exists(path):
    with open(path + '.tmp', 'w') as f:
      json.dump(diagnose(config, workdir), f, indent=1)
    os.replace(path + '.tmp', path)


def report(root: str) -> str:
  rows, collapse_rows, level_rows = [], [], []
  for name in sorted(os.listdir(root)):
    path = os.path.join(root, name, 'results.json')
    if not os.path.exists(path):
      continue
    with open(path) as f:
      results = json.load(f)
    history = results['valid_history']
    per_epoch = table1_report.median_epoch_seconds(results)
    gaucs = ' / '.join(f'{h["GAUC"]:.4f}' for h in history)
    rows.append(f'| `{name}` | {gaucs} | {results["best_epoch"]} | '
                f'{results["valid"]["GAUC"]:.4f} | {per_epoch:.0f} |')
    diagnosis_path = os.path.join(root, name, 'diagnosis.json')
    if not os.path.exists(diagnosis_path):
      continue
    with open(diagnosis_path) as f:
      found = json.load(f)
    bilstm = [f'{found[key]:.3f}' if key in found else '-' for key in
              ('bilstm_to_z_norm_ratio', 'bilstm_cosine_to_mean_over_users')]
    collapse_rows.append(
        f'| `{name}` | {found["capsules_cosine_to_mean_over_users"]:.3f} | '
        f'{found["interests_cosine_to_mean_over_users"]:.3f} | '
        f'{found["interests_cosine_within_user"]:.3f} | {" | ".join(bilstm)} |')
    if 'valid_gauc_by_level_pooling' in found:
      correlations = ', '.join(f'{c:.3f}' for c in found['level_score_correlation_with_level_0'])
      pooled = ', '.join(f'{k} {v:.4f}' for k, v in found['valid_gauc_by_level_pooling'].items())
      level_rows.append(f'| `{name}` | {correlations} | {pooled} |')
  lines = [
      '# MGNM probes (validation, seed 0)', '',
      f'Written by `python -m experiments.mgnm.probes --root={root} --report_only` from the '
      "probes' records (`experiments/mgnm/probes.py` says what a probe is; each record's "
      "config.txt is the whole configuration it ran). A probe's name is what it changes in "
      "the MGNM table's config; `mgnm` is that config over the probes' first epochs, and "
      "`train.num_epochs=50` is the table's seed-0 MGNM run itself, examined here. "
      'Validation only: nothing here is a test result.', '',
      '| probe | valid GAUC, epoch 1 / 2 / ... | best epoch | best valid GAUC | train s / epoch |',
      '|---|---|---|---|---|', *rows, '',
      '## Do the interests depend on the user?', '',
      "Of each probe's best checkpoint, on validation rows, level 0: the mean cosine of a "
      "user's capsule k (before Eq. 11's projection) and of the interest k (after it) with "
      "that interest's mean direction over all users, and the mean cosine between the K "
      'interests of one user. 1.000 in the first two columns: every user gets the same '
      'interests, and the model ranks items the same way for all of them. After Eq. 11\'s '
      'ReLU no coordinate is negative, so the interests\' cosines run high even between '
      'unrelated users: read collapse off the capsules. With the BiLSTM: '
      "the norm of the term Eq. 10 adds to Z over Z's own, at each real behavior (median), "
      "and that term's sum over the behaviors, cos to its mean over users (\"-\": no BiLSTM, "
      'or a probe examined before these columns existed).', '',
      '| probe | capsules: cos to the mean over users | interests: cos to the mean over '
      "users | interests: cos between a user's K | BiLSTM term / Z | BiLSTM term: cos to "
      'the mean over users |', '|---|---|---|---|---|---|', *collapse_rows, '',
      '## Do the levels differ?', '',
      "Correlation of each level's item scores with level 0's (200 validation rows, every "
      "item), and the validation GAUC with the levels pooled otherwise: Eq. 15's max, Figure "
      "7's sum, or the max over the lower levels only (\"levels 0-0\": H^(0) alone).", '',
      '| probe | score correlation with level 0, per level | valid GAUC by pooling |',
      '|---|---|---|', *level_rows, '',
      "train s / epoch: the median of a probe's epochs (training only); the probes shared the "
      '2 cores with other jobs, so compare them with care.']
  return '\n'.join(lines) + '\n'


def main(argv: list[str]) -> None:
  del argv
  logging.set_verbosity(logging.WARNING)
  root, kept, epochs = table1.ROOT.value, flags.FLAGS.archive, flags.FLAGS.num_epochs
  dataset = flags.FLAGS.datasets[0]
  if not _REPORT_ONLY.value:
    for probe in _PROBES.value:
      probe_config(probe, dataset, epochs)  # Every probe parses before the first trains.
    for probe in _PROBES.value:
      run_probe(root, probe, dataset, epochs)
      if kept:
        archive.archive(root, kept)
  with open(_REPORT.value, 'w') as f:
    f.write(report(kept if kept and not _REPORT_ONLY.value else root))


if __name__ == '__main__':
  for flag, default in SETTINGS.items():
    flags.FLAGS.set_default(flag, default)
  app.run(main)
