"""The downloader against a local HTTP server that mirrors the GitHub raw layout, so the tests run offline."""

from __future__ import annotations

import functools
import hashlib
import logging
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from hamner.data.download import DEFAULT_BASE_URL, SOURCES, RemoteFile, download_dataset
from hamner.errors import ChecksumError, ConfigError, HamnerError


@dataclass
class Mirror:
    """A running local server: its base URL, the folder it serves, and the paths it was asked for."""

    base_url: str
    root: Path
    requests: list[str] = field(default_factory=list)

    def served(self, remote: RemoteFile) -> Path:
        return self.root / remote.owner / remote.repo / remote.commit / remote.path


class _Handler(SimpleHTTPRequestHandler):
    """Serves files quietly and records each requested path."""

    def __init__(self, *args: Any, log: list[str], lock: threading.Lock, **kwargs: Any) -> None:
        self._log = log
        self._lock = lock
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        with self._lock:
            self._log.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def mirror(tmp_path: Path, data_root: Path) -> Iterator[Mirror]:
    served = tmp_path / "served"
    for remotes in SOURCES.values():
        for remote in remotes:
            dst = served / remote.owner / remote.repo / remote.commit / remote.path
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(data_root / remote.dataset / remote.name, dst)
    requests: list[str] = []
    handler = functools.partial(_Handler, directory=str(served), log=requests, lock=threading.Lock())
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Mirror(f"http://127.0.0.1:{server.server_port}", served, requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _leftovers(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.part")) if folder.exists() else []


@pytest.mark.parametrize("dataset", ["twitter2017", "twitter2015"])
def test_download_writes_every_file_verified(dataset: str, mirror: Mirror, data_root: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    paths = download_dataset(dataset, dest, base_url=mirror.base_url)
    assert paths == [dest / dataset / r.name for r in SOURCES[dataset]]
    for remote, path in zip(SOURCES[dataset], paths, strict=True):
        assert path.read_bytes() == (data_root / dataset / remote.name).read_bytes()
    assert _leftovers(dest) == []
    assert len(mirror.requests) == len(SOURCES[dataset])


def test_corrupted_download_raises_and_leaves_nothing(mirror: Mirror, tmp_path: Path) -> None:
    remote = SOURCES["twitter2017"][0]
    served = mirror.served(remote)
    data = bytearray(served.read_bytes())
    data[100:104] = bytes(b ^ 0xFF for b in data[100:104])
    served.write_bytes(bytes(data))
    dest = tmp_path / "dest"
    with pytest.raises(ChecksumError) as info:
        download_dataset("twitter2017", dest, base_url=mirror.base_url)
    message = str(info.value)
    assert remote.url(mirror.base_url) in message
    assert remote.sha256 in message
    assert hashlib.sha256(bytes(data)).hexdigest() in message
    assert not (dest / "twitter2017" / remote.name).exists()
    assert _leftovers(dest) == []


def test_corrupted_download_keeps_previous_good_file(mirror: Mirror, data_root: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    download_dataset("twitter2017", dest, base_url=mirror.base_url)
    remote = SOURCES["twitter2017"][1]
    served = mirror.served(remote)
    served.write_bytes(served.read_bytes()[:-10] + b"corrupted!")
    with pytest.raises(ChecksumError):
        download_dataset("twitter2017", dest, base_url=mirror.base_url, force=True)
    target = dest / "twitter2017" / remote.name
    assert target.read_bytes() == (data_root / "twitter2017" / remote.name).read_bytes()
    assert _leftovers(dest) == []


def test_missing_file_raises_hamner_error_naming_url(mirror: Mirror, tmp_path: Path) -> None:
    remote = SOURCES["twitter2017"][2]
    mirror.served(remote).unlink()
    dest = tmp_path / "dest"
    with pytest.raises(HamnerError) as info:
        download_dataset("twitter2017", dest, base_url=mirror.base_url)
    assert not isinstance(info.value, ChecksumError)
    assert remote.url(mirror.base_url) in str(info.value)
    assert "404" in str(info.value)
    assert not (dest / "twitter2017" / remote.name).exists()
    assert _leftovers(dest) == []


def test_unreachable_server_raises_hamner_error(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that was just free, so nothing listens on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    with pytest.raises(HamnerError) as info:
        download_dataset("twitter2015", tmp_path / "dest", base_url=base_url, timeout=5)
    assert not isinstance(info.value, ChecksumError)
    assert SOURCES["twitter2015"][0].url(base_url) in str(info.value)
    assert _leftovers(tmp_path / "dest") == []


def test_second_download_skips_good_files(mirror: Mirror, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dest = tmp_path / "dest"
    first = download_dataset("twitter2017", dest, base_url=mirror.base_url)
    mirror.requests.clear()
    with caplog.at_level(logging.INFO, logger="hamner.data.download"):
        second = download_dataset("twitter2017", dest, base_url=mirror.base_url)
    assert second == first
    assert mirror.requests == []
    assert sum("skipped" in r.getMessage() for r in caplog.records) == len(SOURCES["twitter2017"])


def test_present_file_with_wrong_hash_is_downloaded_again(
    mirror: Mirror, data_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dest = tmp_path / "dest"
    download_dataset("twitter2017", dest, base_url=mirror.base_url)
    remote = SOURCES["twitter2017"][0]
    target = dest / "twitter2017" / remote.name
    target.write_bytes(b"stale\n")
    mirror.requests.clear()
    with caplog.at_level(logging.WARNING, logger="hamner.data.download"):
        download_dataset("twitter2017", dest, base_url=mirror.base_url)
    assert mirror.requests == [f"/{remote.owner}/{remote.repo}/{remote.commit}/{remote.path}"]
    assert target.read_bytes() == (data_root / "twitter2017" / remote.name).read_bytes()
    assert any(r.levelno == logging.WARNING and str(target) in r.getMessage() for r in caplog.records)


def test_carried_hashes_match_shared_sha256sums(data_root: Path) -> None:
    sums: dict[str, str] = {}
    for line in (data_root / "SHA256SUMS").read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.strip().removeprefix("./")] = digest
    for remotes in SOURCES.values():
        for remote in remotes:
            assert remote.sha256 == sums[f"{remote.dataset}/{remote.name}"], remote


def test_sources_and_urls() -> None:
    assert set(SOURCES) == {"twitter2015", "twitter2017"}
    remote = SOURCES["twitter2015"][3]
    assert remote.url() == (
        f"{DEFAULT_BASE_URL}/JinYuanLi0012/PGIM/a13b27590742893347d09b95c9a2c137c580d38b/data/ImageCaption/BLIP2_15.txt"
    )
    assert remote.url("http://x/") == remote.url("http://x")
    assert all(r.dataset == name for name, remotes in SOURCES.items() for r in remotes)


def test_unknown_dataset_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="twitter2015, twitter2017"):
        download_dataset("twitter2019", tmp_path)
    assert not (tmp_path / "twitter2019").exists()


def test_cli_data_download(mirror: Mirror, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hamner.cli import main

    dest = tmp_path / "root"
    assert main(["data", "download", "twitter2017", "--dest", str(dest), "--base-url", mirror.base_url]) == 0
    printed = capsys.readouterr().out.split()
    assert sorted(printed) == sorted(str(dest / "twitter2017" / r.name) for r in SOURCES["twitter2017"])
    from hamner.data.datasets import load_split

    assert len(load_split("twitter2017", "test", dest)) == 723  # the downloaded root is usable as is
    mirror.served(SOURCES["twitter2017"][0]).write_bytes(b"IMGID:1\nx\tO\n")
    assert main(["data", "download", "twitter2017", "--dest", str(tmp_path / "r2"), "--base-url", mirror.base_url]) == 2
    err = capsys.readouterr().err
    assert "hamner data: error: checksum mismatch for http://127.0.0.1" in err and "expected SHA-256" in err
    assert not (tmp_path / "r2" / "twitter2017" / SOURCES["twitter2017"][0].name).exists()
