"""End-to-end: training learns, resumes exactly after a kill, and is device-count invariant."""

import glob
import json
import os
import re
import signal
import subprocess
import time
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pmix_jax import train
from pmix_jax.errors import ConfigError
from tests.conftest import run_main, start_main, tiny_config, tiny_flags


@pytest.mark.parametrize('model, epochs', [('pyramid', 3), ('sasrec', 12)])
def test_beats_popularity_on_synthetic_data(model, epochs, tmp_path):
  results = train.train_and_evaluate(tiny_config(model, train__num_epochs=epochs),
                                     str(tmp_path))
  popularity = results['baselines']['popularity']['test']
  assert results['test']['NDCG@10'] > 1.5 * popularity['NDCG@10'], (results['test'], popularity)
  assert results['test']['HR@10'] > 1.3 * popularity['HR@10']


def test_workdir_holds_config_checkpoints_events_and_results(tmp_path):
  train.train_and_evaluate(tiny_config('pyramid', train__num_epochs=1), str(tmp_path))
  assert 'pyramid_mixer' in (tmp_path / 'config.txt').read_text()
  assert os.listdir(tmp_path / 'checkpoints' / 'latest')
  assert os.listdir(tmp_path / 'checkpoints' / 'best')
  assert glob.glob(str(tmp_path / 'tensorboard' / 'events.out.tfevents.*'))
  results = json.loads((tmp_path / 'results.json').read_text())
  assert results['protocol'] == 'full' and set(results['test']) >= {'HR@10', 'NDCG@10', 'MRR@10'}
  assert results['host']['backend'] == 'cpu' and results['host']['cpu_cores'] >= 1


def test_a_workdir_refuses_to_resume_or_reuse_a_run_of_another_config(tmp_path):
  config = tiny_config('fpmc', train__num_epochs=1)
  train.train_and_evaluate(config, str(tmp_path))
  stored = (tmp_path / 'config.txt').read_text()
  assert str(train.load_config(str(tmp_path))) == str(config)  # What tools reading a run use.
  changed = tiny_config('fpmc', train__num_epochs=1, train__lr=config.train.lr * 2)
  with pytest.raises(ConfigError) as error:
    train.train_and_evaluate(changed, str(tmp_path))
  assert f'train.lr: {config.train.lr!r} -> {config.train.lr * 2!r}' in str(error.value)
  assert (tmp_path / 'config.txt').read_text() == stored
  with pytest.raises(ConfigError, match='train.lr'):
    train.rescore(changed, str(tmp_path), ('uniform:10',))
  # Bookkeeping changes nothing the run computed.
  train.check_same_run(tiny_config('fpmc', train__num_epochs=1,
                                   train__progress_bar=not config.train.progress_bar,
                                   eval__also_protocols=('uniform:10',)), str(tmp_path))
  # A field the stored run did not have is a difference too: that run may have behaved
  # otherwise.
  older = tiny_config('fpmc', train__num_epochs=1)
  with older.unlocked():
    del older.train['lr']
  (tmp_path / 'config.txt').write_text(str(older))
  assert train.config_differences(config, str(tmp_path)) == [
      f"train.lr: '(absent)' -> {config.train.lr!r}"]
  # ...but for a field added since, which counts as its old value: absent is length_buckets=()
  # here, and not (8,).
  with older.unlocked():
    older.train.lr = config.train.lr
    del older.data['length_buckets']
  (tmp_path / 'config.txt').write_text(str(older))
  assert train.config_differences(config, str(tmp_path)) == []
  bucketed = tiny_config('fpmc', train__num_epochs=1, data__length_buckets=(8,))
  assert train.config_differences(bucketed, str(tmp_path)) == [
      'data.length_buckets: () -> (8,)']
  (tmp_path / 'config.txt').write_text('train: [unclosed\n')
  with pytest.raises(ConfigError, match='config.txt: not a config written by pmix_jax'):
    train.check_same_run(config, str(tmp_path))


def _commits(workdir):
  """Finalized checkpoints: orbax writes commit_success.txt in `<step>.orbax-checkpoint-tmp`
  before renaming it to `<step>`, so a kill in between leaves none."""
  found = glob.glob(os.path.join(workdir, 'checkpoints', 'latest', '*', 'commit_success.txt'))
  return [path for path in found if os.path.basename(os.path.dirname(path)).isdigit()]


def test_resume_after_kill_ends_with_the_same_results(tmp_path):
  # The kill lands after the first commit, at step 40 of an epoch of about 80 steps, so the
  # run resumes mid-epoch. Saving more often only made the test slow (each save ~0.15 s).
  flags = tiny_flags(model__name='pyramid_mixer', train__num_epochs=2,
                     train__checkpoint_every_steps=40)
  reference = run_main('pyramid', str(tmp_path / 'reference'), flags)
  assert reference.returncode == 0, reference.stderr

  workdir = str(tmp_path / 'killed')
  process = start_main('pyramid', workdir, flags, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
  deadline = time.time() + 600  # Generous: startup and compilation on a loaded machine.
  while not _commits(workdir) and process.poll() is None and time.time() < deadline:
    time.sleep(0.02)
  process.send_signal(signal.SIGKILL)
  assert _commits(workdir), 'no checkpoint was committed before the kill'
  process.wait()
  assert process.returncode == -signal.SIGKILL, 'the run ended before it could be killed'
  resumed = run_main('pyramid', workdir, flags)
  assert resumed.returncode == 0, resumed.stderr
  expected = json.loads((tmp_path / 'reference' / 'results.json').read_text())
  step = int(re.search(r'Resumed from step (\d+)', resumed.stderr).group(1))
  epoch_steps = expected['valid_history'][0]['step']  # Validation ends every epoch.
  assert step % epoch_steps, f'resumed at an epoch boundary (step {step}): not mid-epoch'
  actual = json.loads(open(os.path.join(workdir, 'results.json')).read())
  for key in ('test', 'valid', 'train_losses', 'best_step'):
    assert actual[key] == expected[key], key


# MGNM: its BiLSTM sorts and loops over each device's rows (shard_map), here in batches cut
# to several widths (length buckets). Two graph levels instead of four:
# the same sharded code, compiled faster.
@pytest.mark.parametrize('model, overrides', [
    ('sasrec', {}),
    ('mgnm', dict(model__num_levels=2, data__length_buckets=(4, 8), train__group_by_length=2))])
def test_four_devices_match_one_device(model, overrides, tmp_path):
  flags = tiny_flags(train__num_epochs=1, train__log_every_steps=1, **overrides)
  losses = {}
  for devices in (1, 4):
    run = run_main(model, str(tmp_path / str(devices)), flags, devices=devices)
    assert run.returncode == 0, run.stderr
    results = json.loads((tmp_path / str(devices) / 'results.json').read_text())
    assert results['num_devices'] == devices
    losses[devices] = [loss for _, loss in results['train_losses']]
  assert len(losses[1]) >= 4
  assert losses[4] == pytest.approx(losses[1], rel=1e-4)


def test_batch_not_divisible_by_devices_is_a_clear_error(tmp_path):
  run = run_main('sasrec', str(tmp_path), tiny_flags(train__batch_size=66), devices=4)
  assert run.returncode != 0
  assert 'config.train.batch_size=66 must be a positive multiple of the number of devices (4)' \
      in run.stderr
  assert 'Traceback' not in run.stderr


@pytest.mark.parametrize('overrides, message', [
    (dict(data__length_buckets=(8, 0)), r'config.data.length_buckets=\(8, 0\) must be positive'),
    (dict(train__group_by_length=-1), 'config.train.group_by_length must be at least 0')])
def test_bad_length_buckets_are_a_clear_error(tmp_path, overrides, message):
  with pytest.raises(ConfigError, match=message):
    train.train_and_evaluate(tiny_config('fpmc', **overrides), str(tmp_path))
  assert not os.listdir(tmp_path)  # Nothing half-written.


def test_unknown_config_key_is_rejected(tmp_path):
  run = run_main('sasrec', str(tmp_path), tiny_flags(train__learning_rate=0.1))
  assert run.returncode != 0 and 'learning_rate' in run.stderr


def test_model_key_of_another_model_is_rejected(tmp_path):
  with pytest.raises(ConfigError, match="does not take"):
    config = tiny_config('pyramid')
    config.model.name = 'sasrec'
    train.train_and_evaluate(config, str(tmp_path))


@pytest.mark.parametrize('model', ['pyramid', 'mlp_mixer', 'fmlp_rec', 'mlp4rec', 'automlp'])
def test_non_causal_model_refuses_sequence_targets(model, tmp_path):
  with pytest.raises(ConfigError, match='not causal'):
    train.train_and_evaluate(tiny_config(model, train__targets='seq2seq'), str(tmp_path))


def test_ml100k_from_the_command_line(tmp_path, shared_data):
  flags = tiny_flags(data__name='ml-100k', train__num_epochs=1)
  flags.append(f'--config.data.path={os.path.join(shared_data, "ml-100k")}')
  run = run_main('sasrec', str(tmp_path), flags)
  assert run.returncode == 0, run.stderr
  results = json.loads((tmp_path / 'results.json').read_text())
  assert results['data_stats']['users'] == 943 and results['data_stats']['items'] == 1682


def test_missing_data_file_names_the_file(tmp_path):
  run = run_main('sasrec', str(tmp_path / 'run'),
                 tiny_flags(data__name='ml-100k', data__path=str(tmp_path)))
  assert run.returncode != 0
  assert f'{tmp_path}/u.data: file not found' in run.stderr
  assert 'Traceback' not in run.stderr


def test_sampled_protocol_saves_and_reuses_its_negatives(tmp_path):
  # FPMC trains in a second: the protocol's bookkeeping is tested, not a model.
  config = tiny_config('fpmc', train__num_epochs=1, eval__protocol='popularity:20',
                       eval__also_protocols=('full',))
  first = train.train_and_evaluate(config, str(tmp_path))
  saved = sorted(os.listdir(tmp_path / 'negatives'))
  assert saved == ['test-popularity20-seed0.npy', 'valid-popularity20-seed0.npy']
  assert first['protocol'] == 'popularity:20'
  # Sampled metrics are inflated relative to full ranking on the same model.
  full_config = tiny_config('fpmc', train__num_epochs=1)
  full = train.train_and_evaluate(full_config, str(tmp_path / 'full'))
  assert first['test']['HR@10'] > full['test']['HR@10']
  # `also_protocols` scores the same checkpoint as a run under that protocol would (one
  # epoch, so both keep the same checkpoint).
  assert first['also_protocols']['full']['test'] == full['test']
  assert (first['also_protocols']['full']['popularity']['test'] ==
          full['baselines']['popularity']['test'])
  # A second run in the same workdir scores the same saved candidates.
  before = {name: os.path.getmtime(tmp_path / 'negatives' / name) for name in saved}
  again = train.train_and_evaluate(config, str(tmp_path))
  assert again['test'] == first['test']
  assert before == {n: os.path.getmtime(tmp_path / 'negatives' / n) for n in saved}
  # Rescoring the finished run's checkpoint under another protocol gives what the run itself
  # would have reported for it; those already there are kept, and it lands in results.json.
  full_dir = tmp_path / 'full'
  rescored = train.rescore(full_config, str(full_dir), ('full', 'popularity:20:unseen'))
  assert rescored['also_protocols']['full']['test'] == full['test']
  assert rescored['also_protocols']['popularity:20:unseen']['test'] != first['test']
  with open(full_dir / 'results.json') as f:
    assert json.load(f)['also_protocols'] == rescored['also_protocols']
  unseen = train.train_and_evaluate(
      tiny_config('fpmc', train__num_epochs=1, eval__protocol='popularity:20:unseen'),
      str(tmp_path / 'unseen'))
  assert rescored['also_protocols']['popularity:20:unseen']['test'] == unseen['test']


def test_temporal_split_trains_and_ranks_every_target(tmp_path):
  """With the SURGE preset a user can have many targets; each is ranked once."""
  results = train.train_and_evaluate(
      tiny_config('sasrec', data__preset='surge', train__num_epochs=1), str(tmp_path))
  stats = results['data_stats']
  assert stats['test_targets'] > stats['users'] - stats['users_train_only']
  assert 0.0 <= results['test']['HR@10'] <= 1.0


def test_grouped_protocol_reports_gauc_and_can_select_on_it(tmp_path):
  results = train.train_and_evaluate(
      tiny_config('sasrec', data__preset='surge', train__num_epochs=2,
                  eval__protocol='grouped:10', eval__ks=(5,),
                  eval__early_stopping_metric='GAUC'), str(tmp_path))
  assert results['protocol'] == 'grouped:10'
  assert 0.5 < results['test']['GAUC'] <= 1.0
  assert results['valid_history'][0]['GAUC'] > 0


def test_history_mask_with_a_sampled_protocol_is_rejected(tmp_path):
  with pytest.raises(ConfigError, match="':unseen' protocol"):
    train.train_and_evaluate(tiny_config('pyramid', eval__protocol='uniform:10',
                                         eval__mask_history=True), str(tmp_path))


class _OwnLossModel(nn.Module):
  """A model with its own training signal: the loop must call `training_loss`."""
  causal: ClassVar[bool] = False

  @nn.compact
  def __call__(self, inputs, *, train):
    table = self.param('table', nn.initializers.ones, (5, 2))
    return jnp.ones((inputs.shape[0], 1, 2)), table

  def training_loss(self, batch, *, loss, num_negatives):
    _, table = self(batch['inputs'], train=True)
    noise = jax.random.uniform(self.make_rng('negatives'))
    return jnp.sum(table) * batch['targets'].sum() * num_negatives + 0.0 * noise


def test_a_model_with_its_own_training_loss_is_trained_on_it():
  model = _OwnLossModel()
  params = model.init(jax.random.key(0), jnp.zeros((1, 3, 1), jnp.int32), train=False)['params']
  tx = optax.sgd(0.1)
  state = train.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                           opt_state=tx.init(params),
                           rng=jax.random.key_data(jax.random.key(1)))
  batch = dict(inputs=jnp.ones((2, 3, 1), jnp.int32), targets=jnp.array([1, 2]))
  new_state, value = train.train_step(state, batch, model=model, tx=tx, loss='softmax',
                                      num_negatives=2, sequence_targets=False)
  assert value == 10 * 3 * 2  # sum(table) * sum(targets) * num_negatives.
  # d loss / d table = 6 everywhere, so one SGD step moves every entry by -0.6.
  np.testing.assert_allclose(new_state.params['table'], 1 - 0.6, rtol=1e-6)


@pytest.mark.parametrize('model', ['sasrec', 'surge', 'mgnm', 'mind'])
def test_candidate_scores_are_the_full_scores_of_those_items(model):
  """The score function's candidates path (a dot product with the candidates' rows; the
  target-aware models' own `score_candidates`) agrees with scoring every item, so sampled
  protocols mean the same whichever path a model takes."""
  setup = train.Setup.create(tiny_config(model))
  inputs = next(iter(setup.train_batches.epoch(0)))['inputs'][:4]
  vocab = setup.data.vocab_sizes[0]
  candidates = np.random.default_rng(0).integers(1, vocab, size=(4, 7))
  full = np.asarray(jax.jit(setup.score_fn)(setup.state.params, inputs))
  chosen = jax.jit(setup.score_fn)(setup.state.params, inputs, candidates)
  np.testing.assert_allclose(chosen, np.take_along_axis(full, candidates, axis=1),
                             rtol=1e-5, atol=1e-5)
