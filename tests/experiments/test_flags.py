"""The experiment modules that are also imported as libraries can share one process.

absl flags are process-wide: two imported modules defining the same flag name make the
second import fail, and with it whatever imported it (a test file's collection, say)."""

import pathlib
import re
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]


def imported_experiment_modules() -> set[str]:
  """Every `experiments.*` module that a test or another experiment module imports."""
  modules = set()
  for path in [*REPO.glob('tests/**/*.py'), *REPO.glob('experiments/**/*.py')]:
    for package, names in re.findall(r'from (experiments(?:\.\w+)*) import ([\w, ]+)',
                                     path.read_text()):
      for name in names.split(','):
        name = name.strip().split(' as ')[0]
        is_module = (REPO / package.replace('.', '/') / f'{name}.py').exists()
        modules.add(f'{package}.{name}' if is_module else package)
  return modules


def test_library_modules_import_together():
  modules = imported_experiment_modules()
  assert 'experiments.automlp.search_sanity' in modules  # the scan sees the tests' imports
  code = ''.join(f'import {module}\n' for module in sorted(modules))
  result = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
