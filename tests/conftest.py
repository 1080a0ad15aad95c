"""Shared test helpers: a tiny configuration that makes end-to-end runs take seconds."""

import importlib
import os
import subprocess
import sys

import ml_collections
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), 'shared', 'data')

TINY = {
    'data.synthetic.num_users': 300, 'data.synthetic.num_items': 100,
    'data.synthetic.num_categories': 6, 'data.synthetic.mean_length': 20,
    'data.max_len': 16, 'model.hidden': 32, 'train.batch_size': 64, 'eval.batch_size': 64,
    # Checkpoints at epoch ends only and sparse loss logs: saving every few steps was most
    # of a tiny run's time. Tests of resuming set their own checkpoint interval.
    'train.num_epochs': 3, 'train.log_every_steps': 50,
    'train.checkpoint_every_steps': 100_000,
    'train.progress_bar': False,
}


def tiny_config(model: str, **overrides) -> ml_collections.ConfigDict:
  """`configs/<model>.py` with TINY and `overrides` ('a.b' keys written 'a__b') applied."""
  config = importlib.import_module(f'configs.{model}').get_config()
  for key, value in {**TINY, **{k.replace('__', '.'): v for k, v in overrides.items()}}.items():
    *path, leaf = key.split('.')
    node = config
    for part in path:
      node = node[part]
    node[leaf] = value
  return config


def tiny_flags(**overrides) -> list[str]:
  """TINY and `overrides` as command-line flags for main.py."""
  values = {**TINY, **{k.replace('__', '.'): v for k, v in overrides.items()}}
  return [f'--config.{key}={value}' for key, value in values.items()]


def start_main(model: str, workdir: str, flags: list[str], devices: int = 1,
               **popen) -> subprocess.Popen:
  """Starts `main.py --config=configs/<model>.py` with `devices` host CPU devices."""
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             XLA_FLAGS=f'--xla_force_host_platform_device_count={devices} '
                       '--xla_cpu_collective_call_terminate_timeout_seconds=10')
  return subprocess.Popen(
      [sys.executable, os.path.join(REPO, 'main.py'),
       f'--config={os.path.join(REPO, "configs", model + ".py")}', f'--workdir={workdir}',
       *flags], cwd=REPO, env=env, **popen)


def run_main(model: str, workdir: str, flags: list[str], devices: int = 1,
             timeout: float = 300) -> subprocess.CompletedProcess:
  process = start_main(model, workdir, flags, devices, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
  stdout, stderr = process.communicate(timeout=timeout)
  return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.fixture(autouse=True, scope='session')
def _private_cache(tmp_path_factory):
  """Keeps the data cache (config.data.cache_dir under ~) out of the user's home."""
  home = os.environ.get('HOME')
  os.environ['HOME'] = str(tmp_path_factory.mktemp('home'))
  yield
  if home is not None:
    os.environ['HOME'] = home


@pytest.fixture
def shared_data():
  if not os.path.isdir(SHARED_DATA):
    pytest.skip(f'needs the benchmark datasets in {SHARED_DATA} (absent on this machine)')
  return SHARED_DATA
