"""Fetch the public Twitter-2015/2017 text files from GitHub at pinned commits, checked against carried SHA-256s.

The files are pinned to exact commits and checked against hashes kept in this module, so a download either
reproduces the bytes the project was tested with or fails loudly; it never leaves a partial or unverified file
where the loaders would pick it up. Images are not included (their only source is a Google Drive archive).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from hamner.errors import ChecksumError, ConfigError, HamnerError
from hamner.hashing import file_sha256

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://raw.githubusercontent.com"
_CHUNK = 1 << 16
_USER_AGENT = "hamner-data-download"


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: where it lives upstream (repo @ commit / path) and the SHA-256 it must have."""

    dataset: str
    name: str
    owner: str
    repo: str
    commit: str
    path: str
    sha256: str

    def url(self, base_url: str = DEFAULT_BASE_URL) -> str:
        """The raw-file URL, ``{base_url}/{owner}/{repo}/{commit}/{path}``; base_url is a parameter so tests can
        point it at a local server."""
        return f"{base_url.rstrip('/')}/{self.owner}/{self.repo}/{self.commit}/{self.path}"


# Exactly the values in shared/data/SHA256SUMS; carried here so a download needs nothing but this package.
SHA256: dict[str, str] = {
    "twitter2015/train.txt": "a6246e37aa1c8acd738747fa8257e01775f2a1cc0d4f36f82f9d41d6246ad6fa",
    "twitter2015/valid.txt": "9dcc7f9df7331de3c9cdf67a3450e041c41c6254b5e43925c576e2dfaaabe2ad",
    "twitter2015/test.txt": "edb2665b89bfe58bca06a2c10b9b31cbfa95456135b6a4cbf55c872e48d9b8f9",
    "twitter2015/blip2_captions.txt": "57646c1fd7cf120a5bb6948db56757e35536eed53660f6e0129817cacee492ec",
    "twitter2017/train.txt": "801e149e8635b19d66b4ec1212c329be340ada501b35c5fa55455fb6f53633be",
    "twitter2017/valid.txt": "41b5db90cb32059c14c2c3ccd50845fb77f1e3d3e4f7d0c210a61bc507d8a73e",
    "twitter2017/test.txt": "a7d9e172ae85bd3e35276eb2b01ce223321bdc92a47b234e24305d72e7a05243",
    "twitter2017/blip2_captions.txt": "6ac8231876221740faec3e9d10b78501d678f9f1379e893bbd3c68f885241919",
    "twitter2017/vitcmnet_image_captions.csv": "0065a0ea6201b18c89ac25247998c7fc2f4819736279537344e7be0e9bf9336f",
}

_UMT = ("jefferyYu", "UMT", "f478ee65564b5532319a6cc643203149acfc5eed")
_PGIM = ("JinYuanLi0012", "PGIM", "a13b27590742893347d09b95c9a2c137c580d38b")
_VITCMNET = ("SiweiWei6", "VIT-CMNet", "f6106aaab13e96e20825bbea2d3f68d21fa7a6f3")


def _remote(dataset: str, name: str, source: tuple[str, str, str], path: str) -> RemoteFile:
    """Build one entry, taking its hash from SHA256 so each value is written down only once."""
    owner, repo, commit = source
    return RemoteFile(dataset, name, owner, repo, commit, path, SHA256[f"{dataset}/{name}"])


SOURCES: dict[str, tuple[RemoteFile, ...]] = {
    "twitter2015": (
        *(_remote("twitter2015", f"{s}.txt", _UMT, f"data/twitter2015/{s}.txt") for s in ("train", "valid", "test")),
        _remote("twitter2015", "blip2_captions.txt", _PGIM, "data/ImageCaption/BLIP2_15.txt"),
    ),
    "twitter2017": (
        *(_remote("twitter2017", f"{s}.txt", _UMT, f"data/twitter2017/{s}.txt") for s in ("train", "valid", "test")),
        _remote("twitter2017", "blip2_captions.txt", _PGIM, "data/ImageCaption/BLIP2_17.txt"),
        _remote("twitter2017", "vitcmnet_image_captions.csv", _VITCMNET, "data/NER_data/twitter17_caption.csv"),
    ),
}


def _fetch(remote: RemoteFile, url: str, target: Path, timeout: float) -> None:
    """Stream ``url`` to ``<target>.part`` while hashing, then move it into place only if the hash matches.

    The temporary file sits next to the target so ``os.replace`` is an atomic rename; on any failure it is
    removed, so neither a partial nor a wrong file is ever left under the final name.
    """
    part = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response, part.open("wb") as out:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                with tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=f"{remote.dataset}/{remote.name}",
                    disable=None,
                    leave=False,
                ) as bar:
                    for chunk in iter(lambda: response.read(_CHUNK), b""):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
        except urllib.error.HTTPError as exc:
            raise HamnerError(f"download failed: {url}: HTTP {exc.code} {exc.reason}") from exc
        except urllib.error.URLError as exc:
            raise HamnerError(f"download failed: {url}: {exc.reason}") from exc
        except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
            raise HamnerError(f"download failed: {url}: {exc!r}") from exc
        actual = digest.hexdigest()
        if actual != remote.sha256:
            raise ChecksumError(f"checksum mismatch for {url}: expected SHA-256 {remote.sha256}, got {actual}")
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)


def download_dataset(
    dataset: str,
    dest_root: str | Path,
    base_url: str = DEFAULT_BASE_URL,
    force: bool = False,
    timeout: float = 60.0,
) -> list[Path]:
    """Download every text file of ``dataset`` into ``<dest_root>/<dataset>/`` and return their paths.

    Files already present with the right hash are kept (unless ``force``), so the command is cheap to rerun;
    a present file with a wrong hash is fetched again. Raises ConfigError for an unknown dataset, ChecksumError
    when a download does not match its carried hash, and HamnerError for network failures.
    """
    if dataset not in SOURCES:
        raise ConfigError(f"unknown dataset {dataset!r}; known: {', '.join(sorted(SOURCES))}")
    folder = Path(dest_root) / dataset
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for remote in SOURCES[dataset]:
        target = folder / remote.name
        url = remote.url(base_url)
        if target.is_file() and not force:
            if file_sha256(target) == remote.sha256:
                log.info("%s already present with the right SHA-256, skipped", target)
                written.append(target)
                continue
            log.warning("%s is present but its SHA-256 is wrong; downloading it again", target)
        log.info("downloading %s -> %s", url, target)
        _fetch(remote, url, target, timeout)
        log.info("%s written and verified", target)
        written.append(target)
    return written
