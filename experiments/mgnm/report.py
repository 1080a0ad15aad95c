r"""Writes experiments/mgnm/RESULTS.md from the runs of `table2.py`.

    python -m experiments.mgnm.report --root=/tmp/mgnm

Every number in the tables is read from the runs' results.json files; the paper's numbers
are its Tables 2 and 3 (Toys and Games) as transcribed in shared/papers/mgnm.txt.
"""

from __future__ import annotations

import glob
import json
import os

import numpy as np
from absl import app, flags, logging

from experiments.pyramid_mixer import report as table1_report
from experiments.pyramid_mixer import table1

METRICS = ('GAUC', 'NDCG@5', 'HR@5', 'MRR@5')

_ALIKE_BATCHES = flags.DEFINE_string(
    'alike_batches', os.path.join(os.path.dirname(__file__), 'alike_batches'),
    "Runs of the table's configs with batches of alike lengths, set beside its own.")
# Table 2, Toys and Games (GAUC, NDCG@5, HIT@5, MRR@5); the paper's crawl, not our cut.
PAPER = {
    'caser': (.6234, .0679, .1012, .0569), 'a2svd': (.6846, .0507, .0739, .0430),
    'gru4rec': (.6624, .0840, .1278, .0697), 'sli_rec': (.7847, .0932, .1327, .0803),
    'tgsrec': (.7915, .1410, .2027, .1164), 'mimn': (.7224, .1158, .1676, .0988),
    'mind': (.6611, .1015, .1510, .0824), 'comirec_dr': (.6681, .1131, .1597, .0978),
    'comirec_sa': (.6486, .0665, .0977, .0563), 'surge': (.7863, .0930, .1353, .0791),
    'mgnm': (.8078, .1611, .2231, .1408),
    # Table 3, the ablations on Toys and Games.
    'mgnm-without_ugcn': (.7499, .0929, .1325, .0799),
    'mgnm-without_l1': (.7757, .1306, .1848, .1128),
    'mgnm-without_bilstm': (.6743, .1205, .1689, .1046),
    'mgnm-without_maxpool': (.8491, .0980, .1430, .0832),
    'mgnm-scn_bilstm': (.6589, .0838, .1223, .0712),
    'mgnm-scn_sum_pool': (.6651, .0846, .1232, .0720),
    'mgnm-scn_self_attention': (.6724, .0791, .1148, .0674),
}
NOT_IMPLEMENTED = ('tgsrec',)

COMMANDS = """```bash
python -m experiments.mgnm.table2 --root=ROOT --datasets=toys --split=per_user_temporal
python -m experiments.mgnm.table2 --root=ROOT --datasets=toys --models=gru4rec \\
    --length_buckets=8,16,32,64  # Random batches, each cut to its longest history.
python -m experiments.mgnm.table2 --root=ROOT --datasets=ml-100k --split=temporal \\
    --models=gru4rec --length_buckets=8,16,32,64
python -m experiments.mgnm.table2 --root=ROOT --datasets=ml-100k --split=temporal
python -m experiments.mgnm.table2 --root=ROOT --datasets=toys --split=per_user_temporal \\
    --models=mgnm:without_ugcn,mgnm:without_l1,mgnm:without_bilstm,mgnm:without_maxpool,\\
mgnm:scn_bilstm,mgnm:scn_sum_pool,mgnm:scn_self_attention,mgnm:sampled_softmax,\\
mgnm:bilstm_in_routing
python -m experiments.mgnm.table2 --root=ROOT_ALIKE --datasets=toys \\
    --models=mgnm,mind,a2svd,caser --seeds=0 --length_buckets=8,16,32,64 \\
    --group_by_length=16  # The batching check.
python -m experiments.mgnm.report --root=ROOT --alike_batches=ROOT_ALIKE
```"""

PICTURE = 'interests_toys.png'
# The picture of the first Toys run (seed 0), under the config it trained with.
PICTURE_COMMAND = """```bash
python -m experiments.mgnm.interests \\
    --workdir="ROOT/toys/mgnm/lr=0.001,dropout=0,hidden=16/seed=0" --users=4 \\
    --out=experiments/mgnm/interests_toys.png
```"""

DIFFERENCES = """## Where we differ from the paper, and why

- **Data.** The paper's Toys and Games is the ratings-only crawl (313,557 users, 6.2M
  interactions); ours is the 5-core review file of S3-Rec (19,412 users, 167,597
  interactions), a different and much smaller cut, with the time order of each user but no
  timestamps: each user's records are split 70/10/20 by position instead of the paper's
  global split by time. ML-100K has timestamps and gets the real global temporal split.
  Micro-video is private and Musical Instruments is not in our shared data.
- **Negatives.** 100 uniform negatives outside the user's history per test record (the
  official code evaluates against 5 during training and 1,000 in its final test path).
- **Full ranking of SURGE and SLi-Rec** is not run by default (`--skip_full_ranking`):
  they run their network for every (row, item) pair, hours per split on Toys on this CPU
  (timings in their module docs). Under `grouped:100` they score only each target and its
  100 negatives.
- **Model selection** on validation GAUC (the official code picks the best epoch on test).
- **Batches** are random and 100 wide, as the code's. Batches of alike lengths, each cut
  to its longest history (README, "Length buckets"), train MGNM several times faster on
  Toys, whose histories average 6 behaviors, but lowered validation GAUC in every run
  checked ("Batches of alike lengths against random batches" above), so the table does not
  use them. GRU4Rec, trained on every position of 32-row batches, runs on random batches
  too, each only cut to its longest history (`--length_buckets` without
  `--group_by_length`): without dropout that keeps every batch's rows, and its scores to
  float rounding, and skips most padding positions, whose full-softmax logits were most of
  its step (README, "Length buckets"). The other models train on 256 prefixes a batch, and
  most such batches hold a prefix of over 64 behaviors: a cut would save them little.
- **MGNM's deviations from its code** are listed in `pmix_jax/models/mgnm.py` (the
  user-aware graph and the iterated GCN of the paper, not the code's variants; the BiLSTM
  as Eq. 10 reads, with the code's placement as the variant `mgnm:bilstm_in_routing`).
- **TGSRec** is not implemented (it needs real timestamps, which our Toys copy lacks); its
  row is the paper's only.
- **MIMN** trains like SURGE and SLi-Rec (the target against 4 uniform negatives), not on
  the click logs of its code; its other deviations are listed in `pmix_jax/models/mimn.py`.
- **Losses.** Each model trains with its own paper's and code's loss: MGNM with Eq. 17's BCE
  against 5 uniform negatives per target; MIND and ComiRec with a sampled softmax over 10
  uniform negatives per row shared by the batch (2,560 per step). The variant
  `mgnm:sampled_softmax` (`--models=mgnm:sampled_softmax`, not the paper's) trains MGNM with
  the baselines' loss, to tell the model from its training signal.
- **Dropout** is 0 for every model (MGNM's code has none). Without the code's batch
  normalisation (our loop carries no batch statistics), the MLPs of A2SVD, SLi-Rec and
  SURGE start from LeCun-normal kernels instead of the code's N(0, 0.01): with those, the
  L2 term and no dropout, A2SVD collapsed to constant scores on Toys.
- **No early stopping**: every model trains the code's 50 epochs and keeps its best epoch
  on validation GAUC. The earlier runs stopped after 5 epochs without a better validation
  GAUC, which ended MGNM at epoch 9, on a plateau: without the graph, MGNM leaves that
  plateau after about ten more epochs (PROBES.md's 30-epoch probes). A model still
  improving at epoch 50 is capped there: compare "best epoch / run" in the table of every
  run.
- **Training time.** `python -m experiments.mgnm.epoch_time` times one MGNM epoch with the
  table's settings (the README gives its figure on a quiet machine). The
  "train s / epoch" column is each run's median epoch (training only, so that epochs slowed
  by other jobs on the 2 cores, or by a pause, do not count), averaged over its runs.
- **Why MGNM trails here** is probed in `experiments/mgnm/PROBES.md`
  (`python -m experiments.mgnm.probes`): validation runs that change one thing at a time,
  each checked for whether its interests depend on the user, whether Eq. 10's BiLSTM term
  drowns Z, and whether its levels score differently. With the BiLSTM added to Z before
  routing (our reading of Eq. 10), its term grows many times larger than Z and, in the
  first epochs, is the same for every user: every user gets the same interests, the model
  ranks items one way for all, and validation GAUC sits on a plateau. Without the graph,
  the 30-epoch probes leave that plateau after about ten epochs, sooner and higher without
  the BiLSTM or with the code's placement. The table's own 50-epoch run leaves it too;
  "MGNM's table run, examined" above says what its interests and its levels do then.
- **Missing cells** are runs not done yet on this 2-core CPU machine; the commands above
  produce them."""


def picture() -> list[str]:
  """The interest picture (the paper's Figures 5-6), if `PICTURE_COMMAND` has made it."""
  if not os.path.exists(os.path.join(os.path.dirname(__file__), PICTURE)):
    return []
  return ['## Learned interests, per level', '',
          f'![MGNM interests per level]({PICTURE})', '',
          'Four Toys users\' K interest capsules at every level (one PCA over all points), '
          'from the best checkpoint of the seed-0 run; made by:', '', PICTURE_COMMAND, '']


# The table's seed-0 MGNM run, examined by probes.py as the probe that changes nothing but the
# probes' short schedule back to the table's.
TABLE_RUN_PROBE = os.path.join(os.path.dirname(__file__), 'probes', 'train.num_epochs=50')


def pooling_label(name: str) -> str:
  """`probes.diagnose`'s name of a level pooling, in words."""
  return {'max': "max over all levels (Eq. 15)", 'sum': 'sum over all levels (Figure 7)',
          'max over levels 0-0': 'level 0 alone (H^(0), before any GCN layer)'}.get(name, name)


def table_run_diagnosis(probe: str = TABLE_RUN_PROBE) -> list[str]:
  """What `probes.diagnose` found in the table's seed-0 MGNM run (its best checkpoint, on
  validation rows), if that probe's record exists."""
  path = os.path.join(probe, 'diagnosis.json')
  if not os.path.exists(path):
    return []
  with open(path) as f:
    found = json.load(f)
  pooled = found['valid_gauc_by_level_pooling']
  best = max(pooled, key=pooled.get)
  lines = [
      "## MGNM's table run, examined", '',
      f"The seed-0 Toys run's best checkpoint, on {found['rows']} validation rows "
      f'(`experiments.mgnm.probes`, probe `{os.path.basename(probe)}`; PROBES.md has the '
      'short probes beside it):', '',
      f"- its level-0 capsules' mean cosine to their mean over users is "
      f"{found['capsules_cosine_to_mean_over_users']:.3f} (1.000: every user the same "
      'interests);']
  if 'bilstm_to_z_norm_ratio' in found:
    lines.append(f"- the term Eq. 10's BiLSTM adds to Z is {found['bilstm_to_z_norm_ratio']:.0f}"
                 " times Z's norm (median over real behaviors);")
  lines += [
      '- validation GAUC with its levels pooled otherwise (the same parameters):', '',
      '| levels pooled | valid GAUC |', '|---|---|',
      *(f'| {pooling_label(name)} | {gauc:.4f} |' for name, gauc in pooled.items()), '',
      f'Best on validation: {pooling_label(best)}; '
      + ('that is Eq. 15.' if best == 'max' else
         f'Eq. 15\'s max over all levels trails it by {pooled[best] - pooled["max"]:.4f}.'),
      '']
  return lines


def _load(path: str) -> dict:
  with open(path) as f:
    return json.load(f)


def batching_check(root: str, alike_root: str) -> list[str]:
  """Every run under `alike_root` (batches of alike lengths, cut to their longest input)
  beside the run of the same dataset, model, grid point and seed under `root` (the table's
  random batches at full width), when both exist: validation and test GAUC and the median
  epoch of each."""
  rows, gaps = [], []
  for path in sorted(glob.glob(os.path.join(alike_root, '*', '*', '*', 'seed=*',
                                            'results.json'))):
    relative = os.path.relpath(path, alike_root)
    if not os.path.exists(os.path.join(root, relative)):
      continue
    grouped, random = map(_load, (path, os.path.join(root, relative)))
    dataset, model, _, seed, _ = relative.split(os.sep)
    gaps.append(grouped['test']['GAUC'] - random['test']['GAUC'])
    rows.append(
        f'| {dataset} | {model} | {seed.partition("=")[2]} | ' + ' | '.join(
            f'{run["valid"]["GAUC"]:.4f}' for run in (grouped, random)) + ' | ' + ' | '.join(
            f'{run["test"]["GAUC"]:.4f}' for run in (grouped, random)) + f' | {gaps[-1]:+.4f} | '
        + ' | '.join(f'{table1_report.median_epoch_seconds(run):.0f}'
                     for run in (grouped, random)) + ' |')
  if not rows:
    return []
  return ['## Batches of alike lengths against random batches', '',
          "The table's runs draw random batches at full width, as the code does (GRU4Rec's are "
          'cut to their longest history, the same rows: see below). The same '
          'configs ran with batches of alike lengths, each cut to its longest input '
          '(`group_by_length=16`, `length_buckets` 8, 16, 32, 64; README, "Length buckets"; '
          f'`{os.path.relpath(alike_root)}`), which changes which rows share a batch and '
          'nothing else. The epoch times are medians; runs that shared the 2 cores with '
          'other jobs ran slower.', '',
          '| dataset | model | seed | valid GAUC alike | random | test GAUC alike | random | '
          'alike minus random | train s / epoch alike | random |', '|---' * 10 + '|', *rows, '',
          f'Test GAUC, alike minus random: mean {np.mean(gaps):+.4f} over {len(gaps)} pairs, '
          f'{sum(g < 0 for g in gaps)} of them lower.', '']


def most_popular(cells: dict) -> list[str]:
  """Rows in `table1_report.table`'s layout: per dataset, the most-popular ranker's test
  metrics, read from the dataset's first run."""
  return [f'| {dataset} | most popular | - | ' + ' | '.join(
      f'{run["baselines"]["popularity"]["test"][m]:.4f}' for m in METRICS) + ' |'
          for dataset, run in table1_report.first_runs(cells).items()]


def versus_baselines(cells: dict, metric: str = 'GAUC') -> list[str]:
  """The paper's claim (MGNM ahead of every baseline), per dataset: MGNM's mean test
  `metric` minus each other model's
  (variants of MGNM excluded), largest gap first; a negative gap is a baseline ahead."""
  lines = []
  for dataset in sorted({dataset for dataset, _ in cells}):
    mean = lambda model: np.mean([run['test'][metric] for run in cells[(dataset, model)][1]])
    seeds = lambda model: len(cells[(dataset, model)][1])
    if (dataset, 'mgnm') not in cells:
      continue
    others = sorted((mean('mgnm') - mean(model), model) for d, model in cells
                    if d == dataset and not model.startswith('mgnm'))
    if not others:
      continue
    ahead = [model for gap, model in others if gap < 0]
    lines += [f'{dataset}: MGNM {mean("mgnm"):.4f} ({seeds("mgnm")} seeds); '
              + (f'behind {len(ahead)} of {len(others)} baselines run so far.' if ahead else
                 f'ahead of all {len(others)} baselines run so far.'), '',
              f'| baseline | seeds | {metric} | MGNM minus baseline |', '|---|---|---|---|',
              *(f'| {model} | {seeds(model)} | {mean(model):.4f} | {gap:+.4f} |'
                for gap, model in others), '']
  if not lines:
    return []
  return [f'## MGNM against each baseline (test {metric}, `grouped:100`)', '',
          'The paper ranks MGNM above every baseline; this section checks that claim here. '
          'Means over the seeds run so far; a cell with fewer than 3 seeds may still move.', '',
          *lines]


def main(argv: list[str]) -> None:
  del argv
  logging.set_verbosity(logging.WARNING)
  root = table1.ROOT.value
  cells = table1_report.load_cells(root)
  lines = [
      *table1_report.header('MGNM, Tables 2 and 3 on public data', 'experiments.mgnm.report',
                            'experiments.mgnm.table2', root),
      '## Protocol: `grouped:100`, test split, mean ± std over seeds',
      '',
      *table1_report.table(cells, lambda run: run['test'], METRICS),
      *most_popular(cells),
      '',
      'The most-popular ranker (training counts, the same for every run of a dataset) is '
      'scored by each run against the same negatives. Tie share of the ranks (1: a tie '
      'counts against the target): '
      f'{sorted({run["tie_share"] for _, runs in cells.values() for run in runs})}.',
      '',
      'The paper (Toys and Games, Table 2 and the ablations of Table 3) beside ours on Toys '
      '(mean over seeds; a different cut of the data, see below):',
      '',
      '| model | ' + ' | '.join(f'paper {m} | ours' for m in METRICS) + ' | train s / epoch |',
      '|---|' + '---|---|' * len(METRICS) + '---|',
  ]
  for model, paper in PAPER.items():
    runs = cells.get(('toys', model), (None, []))[1]
    ours = [f'{np.mean([run["test"][m] for run in runs]):.4f}' if runs else '-'
            for m in METRICS]
    epoch = (f'{np.mean([table1_report.median_epoch_seconds(run) for run in runs]):.0f}'
             if runs else '-')
    note = ' (not implemented)' if model in NOT_IMPLEMENTED else ''
    lines.append(f'| {model}{note} | ' + ' | '.join(
        f'{p:.4f} | {o}' for p, o in zip(paper, ours)) + f' | {epoch} |')
  lines += [
      '',
      *versus_baselines(cells),
      '## The same checkpoints under `full` ranking (every item a candidate)',
      '',
      *table1_report.table(cells, table1_report.full_ranking,
                           ('NDCG@5', 'HR@5', 'MRR@5', 'NDCG@10', 'HR@10')),
      '',
      *batching_check(root, _ALIKE_BATCHES.value),
      *table_run_diagnosis(),
      *picture(),
      *table1_report.data_table(cells),
      '## Every run so far', '',
      *table1_report.every_run(root, 'GAUC', METRICS, ('NDCG@5', 'HR@5')),
      '', '## Commands', '', COMMANDS, '', DIFFERENCES]
  with open(table1_report.OUT.value + '.tmp', 'w') as f:
    f.write('\n'.join(lines) + '\n')
  os.replace(table1_report.OUT.value + '.tmp', table1_report.OUT.value)
  print('\n'.join(lines))


if __name__ == '__main__':
  flags.FLAGS.set_default('out', os.path.join(os.path.dirname(__file__), 'RESULTS.md'))
  app.run(main)
