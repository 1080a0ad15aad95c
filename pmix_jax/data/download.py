"""Fetches the official GroupLens MovieLens archives, verifies them and unpacks them.

    python -m pmix_jax.data download ml-1m [--dest=DIR] [--archive=PATH] [--timeout=SECONDS]

Online, the archive is streamed from files.grouplens.org into a temporary file in `DIR`
(default `~/.cache/pmix_jax/datasets`) while its size and sha256 are checked; only a matching
archive is renamed to `DIR/<name>.zip` and unpacked, into a temporary directory that is then
renamed to `DIR/<name>`, so no half-written archive or half-unpacked dataset is ever left
behind. Offline, the download fails after at most `timeout` seconds without a reply, with
instructions to fetch the archive elsewhere and pass it with `--archive`, which verifies and
unpacks it the same way. Only the standard library is used.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import os
import shlex
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from typing import BinaryIO, Callable

from pmix_jax.errors import DataError

DEFAULT_DEST = os.path.join('~', '.cache', 'pmix_jax', 'datasets')
DEFAULT_TIMEOUT = 15.0  # Seconds without a reply (connecting or reading) before giving up.
_CHUNK = 1 << 16


@dataclasses.dataclass(frozen=True)
class Archive:
  """An official archive: it holds one top-level directory named like the dataset."""
  url: str
  size: int  # Bytes.
  sha256: str
  required: tuple[str, ...]  # Files the loader needs, relative to the top-level directory.


# Sizes and sha256 digests copied from tensorflow-datasets 4.9.10, file
# tensorflow_datasets/url_checksums/movielens.txt (tests/data/test_download.py compares them
# with that file when the package is installed).
ARCHIVES: dict[str, Archive] = {
    'ml-100k': Archive(
        url='https://files.grouplens.org/datasets/movielens/ml-100k.zip', size=4924029,
        sha256='50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229',
        required=('u.data', 'u.item')),
    'ml-1m': Archive(
        url='https://files.grouplens.org/datasets/movielens/ml-1m.zip', size=5917549,
        sha256='a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20',
        required=('ratings.dat', 'movies.dat')),
}


def archive_spec(name: str) -> Archive:
  if name not in ARCHIVES:
    raise DataError(f'unknown dataset {name!r} to download; known: '
                    f'{", ".join(sorted(ARCHIVES))}')
  return ARCHIVES[name]


def config_flags(name: str, path: str) -> str:
  """The command-line flags that make main.py (or `stats`) read the unpacked dataset."""
  return ' '.join(shlex.quote(flag) for flag in
                  (f'--config.data.name={name}', f'--config.data.path={path}'))


def fetch(name: str, dest: str | None = None, archive: str | None = None,
          timeout: float = DEFAULT_TIMEOUT,
          report: Callable[[str], None] = print) -> str:
  """Makes `dest/name` hold the unpacked official archive of dataset `name`; returns it.

  Nothing is done when `dest/name` already holds the dataset. `archive` is a copy of the
  official archive downloaded by hand; without it `dest/name.zip` is used when it matches,
  else the archive is downloaded. Raises DataError when the dataset is unknown, the archive
  does not match the expected size and sha256, or the download fails (the message then says
  how to download and pass the archive by hand).
  """
  spec = archive_spec(name)
  dest = os.path.abspath(os.path.expanduser(dest or DEFAULT_DEST))
  target = os.path.join(dest, name)
  if os.path.isdir(target):
    missing = [f for f in spec.required if not os.path.isfile(os.path.join(target, f))]
    if missing:
      raise DataError(f'{target} exists but has no {missing[0]}; remove it or choose another '
                      '--dest')
    report(f'{name} is already unpacked in {target}; nothing to do')
    return target
  if os.path.exists(target):
    raise DataError(f'{target} exists and is not a directory; remove it or choose another --dest')
  if archive is not None:
    archive = os.path.abspath(os.path.expanduser(archive))
    verify(archive, spec)
    report(f'verified {archive}: {spec.size:,} bytes, sha256 {spec.sha256}')
  created = not os.path.isdir(dest)
  try:
    os.makedirs(dest, exist_ok=True)
  except OSError as error:
    raise DataError(f'cannot create the destination directory {dest}: {error}') from None
  try:
    if archive is None:
      archive = os.path.join(dest, f'{name}.zip')
      try:
        verify(archive, spec)
        report(f'found the verified archive {archive}')
      except DataError as error:
        if os.path.exists(archive):
          report(f'{error}; downloading it again')
        _download(name, spec, archive, timeout, report)
    _unpack(archive, name, spec, dest)
  except BaseException:
    if created:  # Leaves no empty destination behind (its parents stay).
      try:
        os.rmdir(dest)
      except OSError:
        pass
    raise
  report(f'unpacked {name} into {target}')
  return target


def verify(path: str, spec: Archive) -> None:
  """Raises DataError unless the file at `path` has the archive's size and sha256."""
  try:
    with open(path, 'rb') as source:
      _copy_verified(source, None, spec, path)
  except OSError as error:
    raise DataError(f'cannot read the archive {path}: {error.strerror or error}') from None


def offline_instructions(name: str, spec: Archive, dest: str) -> str:
  return '\n'.join([
      f'To install {name} by hand:',
      f'  1. on a machine with internet access, download {spec.url}',
      f'     ({spec.size:,} bytes, sha256 {spec.sha256});',
      '  2. copy it to this machine and run',
      f'     python -m pmix_jax.data download {name} --archive=PATH/{name}.zip '
      f'--dest={shlex.quote(dest)}',
      '     which verifies the archive and unpacks it.'])


def _download(name: str, spec: Archive, archive: str, timeout: float,
              report: Callable[[str], None]) -> None:
  """Streams `spec.url` into a temporary file beside `archive`, renamed to it once verified."""
  dest = os.path.dirname(archive)
  report(f'downloading {spec.url} ({spec.size:,} bytes) to {dest}')
  descriptor, partial = tempfile.mkstemp(prefix=f'.{name}.', suffix='.zip.part', dir=dest)
  try:
    with os.fdopen(descriptor, 'wb') as sink:
      try:
        request = urllib.request.Request(spec.url, headers={'User-Agent': 'pmix_jax'})
        with urllib.request.urlopen(request, timeout=timeout) as response:
          _copy_verified(response, sink, spec, spec.url, limit=2 * spec.size)
      except DataError as error:
        raise DataError(f'{error}; the download was deleted') from None
      except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        hint = '' if isinstance(error, urllib.error.HTTPError) else ' (is this machine offline?)'
        raise DataError(f'could not download {spec.url}: {_reason(error)}{hint}\n'
                        f'{offline_instructions(name, spec, dest)}') from None
    try:
      os.replace(partial, archive)
    except OSError as error:
      raise DataError(f'cannot rename the verified download to {archive}: {error}') from None
  except BaseException:
    _remove(partial)
    raise
  report(f'verified {archive}: {spec.size:,} bytes, sha256 {spec.sha256}')


def _copy_verified(source: BinaryIO, sink: BinaryIO | None, spec: Archive, origin: str,
                   limit: int | None = None) -> None:
  """Copies `source` to `sink` (if any), then raises DataError unless what was read has the
  archive's size and sha256. Gives up once more than `limit` bytes arrive."""
  digest, size = hashlib.sha256(), 0
  while chunk := source.read(_CHUNK):
    size += len(chunk)
    if limit is not None and size > limit:
      raise DataError(f'{origin}: checksum mismatch: expected {spec.size:,} bytes with sha256 '
                      f'{spec.sha256}, received more than {limit:,} bytes; not the archive')
    digest.update(chunk)
    if sink is not None:
      try:
        sink.write(chunk)
      except OSError as error:
        raise DataError(f'cannot write {sink.name}: {error.strerror or error}') from None
  if size != spec.size or digest.hexdigest() != spec.sha256:
    raise DataError(f'{origin}: checksum mismatch: expected {spec.size:,} bytes with sha256 '
                    f'{spec.sha256}, got {size:,} bytes with sha256 {digest.hexdigest()}')


def _unpack(archive: str, name: str, spec: Archive, dest: str) -> None:
  """Extracts the archive's `name/` directory to `dest/name` through a temporary directory."""
  prefix, target = f'{name}/', os.path.join(dest, name)
  try:
    with zipfile.ZipFile(archive) as contents:
      members = [m for m in contents.infolist() if m.filename.startswith(prefix)]
      for member in members:
        parts = member.filename.split('/')
        if '..' in parts or '\\' in member.filename:
          raise DataError(f'{archive}: unsafe member path {member.filename!r}')
      names = {m.filename for m in members}
      missing = [f for f in spec.required if prefix + f not in names]
      if missing:
        raise DataError(f'{archive}: has no {prefix}{missing[0]}')
      unpacking = tempfile.mkdtemp(prefix=f'.{name}.', suffix='.unpacking', dir=dest)
      try:
        contents.extractall(unpacking, members)
        if os.path.exists(target):
          raise DataError(f'{target} appeared while unpacking; remove it or choose another '
                          '--dest')
        os.rename(os.path.join(unpacking, name), target)
      finally:
        shutil.rmtree(unpacking, ignore_errors=True)
  except (zipfile.BadZipFile, zlib.error, EOFError) as error:
    raise DataError(f'{archive}: not a valid zip archive ({error})') from None
  except OSError as error:
    raise DataError(f'cannot unpack {archive} into {dest}: {error}') from None


def _reason(error: BaseException) -> str:
  if isinstance(error, urllib.error.HTTPError):
    return f'HTTP {error.code} {error.reason}'
  if isinstance(error, urllib.error.URLError):
    if not isinstance(error.reason, BaseException):
      return str(error.reason)
    error = error.reason
  if isinstance(error, TimeoutError):
    return 'no reply (timed out)'
  return str(getattr(error, 'strerror', None) or error) or type(error).__name__


def _remove(path: str) -> None:
  try:
    os.remove(path)
  except FileNotFoundError:
    pass
