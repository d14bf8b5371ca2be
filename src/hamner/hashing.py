"""SHA-256 of files: the one helper behind every fingerprint hamner writes (downloaded data, feature
caches, weights named in checkpoints and exports, the served model's files)."""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

_CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, read in 1 MiB chunks so large files need not fit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


@lru_cache(maxsize=32)
def _file_sha256_of_version(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


def file_sha256_cached(path: str | os.PathLike[str]) -> str:
    """:func:`file_sha256`, remembered per (path, size, modification time) within the process, for
    weights files that are fingerprinted each time a model is built."""
    st = os.stat(path)
    return _file_sha256_of_version(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
