"""Tests of `pmix_jax.data.download` without internet: a fake archive in the checksum table,
served from a local HTTP server when the download path is under test."""

import hashlib
import http.server
import importlib.util
import io
import os
import socket
import subprocess
import sys
import threading
import time
import zipfile

import pytest

from pmix_jax.data import download
from pmix_jax.errors import DataError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FILES = {
    'ml-1m/ratings.dat': b'1::1193::5::978300760\n1::661::3::978302109\n',
    'ml-1m/movies.dat': b'1193::One Flew Over the Cuckoo\'s Nest (1975)::Drama\n',
    'ml-1m/users.dat': b'1::F::1::10::48067\n',
}


def make_zip(files: dict[str, bytes]) -> bytes:
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, 'w', zipfile.ZIP_DEFLATED) as archive:
    for name, content in files.items():
      archive.writestr(name, content)
    archive.writestr('__MACOSX/ml-1m/._ratings.dat', b'ignored')  # Outside ml-1m/: skipped.
  return buffer.getvalue()


FAKE_ZIP = make_zip(FILES)
FAKE_SHA256 = hashlib.sha256(FAKE_ZIP).hexdigest()


def fake_spec(url: str = 'http://127.0.0.1:9/ml-1m.zip') -> download.Archive:
  return download.Archive(url=url, size=len(FAKE_ZIP), sha256=FAKE_SHA256,
                          required=('ratings.dat', 'movies.dat'))


@pytest.fixture
def fake_table(monkeypatch):
  """Puts the fake archive in the checksum table as `ml-1m`; returns a setter for its URL."""
  monkeypatch.setitem(download.ARCHIVES, 'ml-1m', fake_spec())
  return lambda url: monkeypatch.setitem(download.ARCHIVES, 'ml-1m', fake_spec(url))


@pytest.fixture
def archive_file(tmp_path):
  path = tmp_path / 'downloads' / 'ml-1m.zip'
  path.parent.mkdir()
  path.write_bytes(FAKE_ZIP)
  return path


@pytest.fixture
def server():
  """A local HTTP server; `server.files` maps a URL path to the bytes it serves."""
  class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the name http.server calls)
      body = httpd.files.get(self.path)
      if body is None:
        self.send_error(404)
        return
      self.send_response(200)
      self.send_header('Content-Length', str(len(body)))
      self.end_headers()
      self.wfile.write(body)

    def log_message(self, *args):
      pass

  httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
  httpd.files = {}
  httpd.url = f'http://127.0.0.1:{httpd.server_address[1]}'
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  yield httpd
  httpd.shutdown()
  httpd.server_close()
  thread.join()


def closed_port() -> int:
  with socket.socket() as sock:
    sock.bind(('127.0.0.1', 0))
    return sock.getsockname()[1]


def tree(path) -> dict[str, bytes]:
  """Every file under `path` (hidden ones too), relative path -> bytes."""
  found = {}
  for root, _, names in os.walk(path):
    for name in names:
      full = os.path.join(root, name)
      found[os.path.relpath(full, path)] = open(full, 'rb').read()
  return found


def test_table_matches_its_provenance_file():
  spec = importlib.util.find_spec('tensorflow_datasets')  # Does not import the package.
  if spec is None or not spec.submodule_search_locations:
    pytest.skip('tensorflow-datasets is not installed')
  path = os.path.join(list(spec.submodule_search_locations)[0], 'url_checksums',
                      'movielens.txt')
  rows = {}
  with open(path) as lines:
    for line in lines:
      url, size, sha256, *_ = line.split('\t')
      rows[url] = (int(size), sha256)
  assert set(download.ARCHIVES) == {'ml-100k', 'ml-1m'}
  for name, archive in download.ARCHIVES.items():
    assert archive.url == f'https://files.grouplens.org/datasets/movielens/{name}.zip'
    assert rows[archive.url] == (archive.size, archive.sha256), name


def test_archive_is_verified_and_unpacked(fake_table, archive_file, tmp_path):
  dest = tmp_path / 'datasets'
  messages = []
  path = download.fetch('ml-1m', str(dest), archive=str(archive_file), report=messages.append)
  assert path == str(dest / 'ml-1m')
  assert tree(dest) == FILES  # No temporary file or directory is left, no __MACOSX.
  assert archive_file.read_bytes() == FAKE_ZIP  # The user's copy is untouched.
  assert any(FAKE_SHA256 in message for message in messages)

  # A second run sees the dataset and changes nothing, even given a corrupt archive.
  archive_file.write_bytes(b'corrupt')
  messages.clear()
  assert download.fetch('ml-1m', str(dest), archive=str(archive_file),
                        report=messages.append) == path
  assert messages == [f'ml-1m is already unpacked in {path}; nothing to do']
  assert tree(dest) == FILES


def test_default_destination_is_the_user_cache(fake_table, archive_file, tmp_path,
                                               monkeypatch):
  monkeypatch.setenv('HOME', str(tmp_path / 'home'))
  path = download.fetch('ml-1m', archive=str(archive_file), report=lambda _: None)
  assert path == str(tmp_path / 'home' / '.cache' / 'pmix_jax' / 'datasets' / 'ml-1m')
  assert download.config_flags('ml-1m', path) == (
      f'--config.data.name=ml-1m --config.data.path={path}')
  assert download.config_flags('ml-1m', '/a b') == (
      "--config.data.name=ml-1m '--config.data.path=/a b'")


@pytest.mark.parametrize('content', [
    FAKE_ZIP[:100] + bytes([FAKE_ZIP[100] ^ 1]) + FAKE_ZIP[101:],  # Same size, one bit.
    FAKE_ZIP[:-1],  # Truncated.
], ids=['flipped_bit', 'truncated'])
def test_corrupt_archive_is_rejected_and_nothing_is_left(fake_table, archive_file, tmp_path,
                                                         content):
  archive_file.write_bytes(content)
  dest = tmp_path / 'datasets'
  with pytest.raises(DataError) as error:
    download.fetch('ml-1m', str(dest), archive=str(archive_file), report=lambda _: None)
  message = str(error.value)
  assert 'checksum mismatch' in message and str(archive_file) in message
  assert f'expected {len(FAKE_ZIP):,} bytes with sha256 {FAKE_SHA256}' in message
  assert f'got {len(content):,} bytes with sha256 {hashlib.sha256(content).hexdigest()}' in (
      message)
  assert not dest.exists()
  assert archive_file.read_bytes() == content  # The user's file is not deleted.


def test_existing_incomplete_directory_is_not_overwritten(fake_table, archive_file, tmp_path):
  (tmp_path / 'ml-1m').mkdir()
  (tmp_path / 'ml-1m' / 'movies.dat').write_bytes(b'mine')
  with pytest.raises(DataError, match=r'ml-1m exists but has no ratings\.dat'):
    download.fetch('ml-1m', str(tmp_path), archive=str(archive_file), report=lambda _: None)
  assert (tmp_path / 'ml-1m' / 'movies.dat').read_bytes() == b'mine'


def test_failed_extraction_leaves_nothing_behind(fake_table, archive_file, tmp_path,
                                                 monkeypatch):
  extract = zipfile.ZipFile._extract_member  # What extractall calls for each member.
  extracted = []

  def extract_some_then_fail(self, member, *args, **kwargs):
    if 'users' in member.filename:
      raise OSError(28, 'No space left on device')
    extracted.append(member.filename)
    return extract(self, member, *args, **kwargs)

  monkeypatch.setattr(zipfile.ZipFile, '_extract_member', extract_some_then_fail)
  dest = tmp_path / 'datasets'
  dest.mkdir()
  with pytest.raises(DataError, match='No space left on device'):
    download.fetch('ml-1m', str(dest), archive=str(archive_file), report=lambda _: None)
  assert extracted == ['ml-1m/ratings.dat', 'ml-1m/movies.dat']  # Half done, then failed.
  assert os.listdir(dest) == []


def test_archive_without_the_dataset_directory_is_rejected(tmp_path, monkeypatch):
  content = make_zip({'ratings.dat': FILES['ml-1m/ratings.dat']})  # Not under ml-1m/.
  monkeypatch.setitem(download.ARCHIVES, 'ml-1m', download.Archive(
      url='http://127.0.0.1:9/', size=len(content),
      sha256=hashlib.sha256(content).hexdigest(), required=('ratings.dat',)))
  (tmp_path / 'other.zip').write_bytes(content)
  with pytest.raises(DataError, match=r'other\.zip: has no ml-1m/ratings\.dat'):
    download.fetch('ml-1m', str(tmp_path / 'd'), archive=str(tmp_path / 'other.zip'),
                   report=lambda _: None)
  assert not (tmp_path / 'd').exists()


def test_download_from_a_local_server(fake_table, server, tmp_path):
  server.files['/ml-1m.zip'] = FAKE_ZIP
  fake_table(server.url + '/ml-1m.zip')
  dest = tmp_path / 'datasets'
  messages = []
  path = download.fetch('ml-1m', str(dest), timeout=5, report=messages.append)
  assert path == str(dest / 'ml-1m')
  # Only the verified archive and the dataset: no partial download, no unpacking directory.
  assert tree(dest) == {'ml-1m.zip': FAKE_ZIP, **FILES}
  assert messages[0].startswith(f'downloading {server.url}/ml-1m.zip')
  assert messages[-1] == f'unpacked ml-1m into {path}'

  # Without the dataset, the verified archive in `dest` is unpacked again, with no network.
  fake_table(f'http://127.0.0.1:{closed_port()}/ml-1m.zip')
  os.rename(dest / 'ml-1m', tmp_path / 'moved')
  messages.clear()
  download.fetch('ml-1m', str(dest), timeout=5, report=messages.append)
  assert messages[0] == f'found the verified archive {dest / "ml-1m.zip"}'
  assert tree(dest) == {'ml-1m.zip': FAKE_ZIP, **FILES}


@pytest.mark.parametrize('served, expected', [
    (FAKE_ZIP[:-10] + b'0123456789', 'got {size:,} bytes with sha256 {sha256}'),
    (FAKE_ZIP * 3, 'received more than {limit:,} bytes'),
], ids=['corrupt', 'too_large'])
def test_corrupt_download_is_deleted(fake_table, server, tmp_path, served, expected):
  server.files['/ml-1m.zip'] = served
  fake_table(server.url + '/ml-1m.zip')
  dest = tmp_path / 'datasets'
  dest.mkdir()
  with pytest.raises(DataError) as error:
    download.fetch('ml-1m', str(dest), timeout=5, report=lambda _: None)
  message = str(error.value)
  assert f'expected {len(FAKE_ZIP):,} bytes with sha256 {FAKE_SHA256}' in message
  assert expected.format(size=len(served), sha256=hashlib.sha256(served).hexdigest(),
                         limit=2 * len(FAKE_ZIP)) in message
  assert 'the download was deleted' in message
  assert os.listdir(dest) == []


def check_offline_message(message: str, url: str, dest) -> None:
  first, *instructions = message.splitlines()
  assert first.startswith(f'could not download {url}: ')
  assert f'download {url}' in message
  assert f'({len(FAKE_ZIP):,} bytes, sha256 {FAKE_SHA256})' in message
  assert (f'python -m pmix_jax.data download ml-1m --archive=PATH/ml-1m.zip --dest={dest}'
          in message)
  assert instructions


def test_unreachable_server_fails_fast_with_instructions(fake_table, tmp_path):
  url = f'http://127.0.0.1:{closed_port()}/ml-1m.zip'
  fake_table(url)
  dest = tmp_path / 'datasets'
  start = time.monotonic()
  with pytest.raises(DataError) as error:
    download.fetch('ml-1m', str(dest), timeout=5, report=lambda _: None)
  assert time.monotonic() - start < 3
  check_offline_message(str(error.value), url, dest)
  assert 'is this machine offline?' in str(error.value).splitlines()[0]
  assert not dest.exists()


def test_silent_server_times_out(fake_table, tmp_path):
  with socket.socket() as listener:  # Accepts connections (backlog) but never answers.
    listener.bind(('127.0.0.1', 0))
    listener.listen(1)
    url = f'http://127.0.0.1:{listener.getsockname()[1]}/ml-1m.zip'
    fake_table(url)
    # Should the timeout be ignored, closing the listener resets the connection: no hang.
    closer = threading.Timer(4, listener.close)
    closer.start()
    start = time.monotonic()
    try:
      with pytest.raises(DataError) as error:
        download.fetch('ml-1m', str(tmp_path), timeout=0.5, report=lambda _: None)
    finally:
      closer.cancel()
    assert time.monotonic() - start < 3
  check_offline_message(str(error.value), url, tmp_path)
  assert 'timed out' in str(error.value).splitlines()[0]
  assert os.listdir(tmp_path) == []


def test_http_error_fails_with_instructions(fake_table, server, tmp_path):
  url = server.url + '/missing.zip'
  fake_table(url)
  with pytest.raises(DataError) as error:
    download.fetch('ml-1m', str(tmp_path), timeout=5, report=lambda _: None)
  assert str(error.value).splitlines()[0] == f'could not download {url}: HTTP 404 Not Found'
  check_offline_message(str(error.value), url, tmp_path)
  assert os.listdir(tmp_path) == []


def test_unknown_dataset_is_an_error(tmp_path):
  with pytest.raises(DataError, match=r"unknown dataset 'ml-10m' to download; known: "
                                      r'ml-100k, ml-1m'):
    download.fetch('ml-10m', str(tmp_path), report=lambda _: None)
  assert os.listdir(tmp_path) == []


def run_cli(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, '-m', 'pmix_jax.data', *args], cwd=REPO,
                        capture_output=True, text=True, timeout=60)


def test_cli_unknown_dataset_is_an_error():
  result = run_cli('download', 'nonexistent')
  assert result.returncode != 0
  assert result.stderr.startswith("error: unknown dataset 'nonexistent' to download; known: "
                                  'ml-100k, ml-1m'), result.stderr
  assert result.stdout == ''


def test_cli_rejects_an_archive_that_is_not_the_official_one(archive_file, tmp_path):
  dest = tmp_path / 'datasets'
  result = run_cli('download', 'ml-1m', f'--archive={archive_file}', f'--dest={dest}')
  assert result.returncode != 0
  expected = download.ARCHIVES['ml-1m']
  assert result.stderr.startswith(f'error: {archive_file}: checksum mismatch: expected '
                                  f'{expected.size:,} bytes with sha256 {expected.sha256}, '
                                  f'got {len(FAKE_ZIP):,} bytes with sha256 {FAKE_SHA256}')
  assert not dest.exists()


@pytest.mark.parametrize('args, message', [
    (('download',), 'download takes one dataset name'),
    (('download', 'ml-1m', 'ml-100k'), 'download takes one dataset name'),
    (('stats', '--dest=/tmp'), '--dest applies only to download'),
])
def test_cli_usage_errors(args, message):
  result = run_cli(*args)
  assert result.returncode != 0
  assert message in result.stderr
  assert 'python -m pmix_jax.data download NAME' in result.stderr


def test_cli_stats_still_works():
  result = run_cli('stats', '--config=configs/base.py', '--config.data.synthetic.num_users=50')
  assert result.returncode == 0, result.stderr
  assert result.stdout.startswith('synthetic(num_users=50')
  assert 'interactions' in result.stdout

