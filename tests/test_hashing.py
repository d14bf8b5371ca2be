"""The one SHA-256 helper: chunked reads give the digest of the whole file, and the cached variant
notices a rewritten file."""

from __future__ import annotations

import hashlib
import os

from hamner.hashing import file_sha256, file_sha256_cached


def test_digest_spans_chunks(tmp_path):
    data = os.urandom((1 << 20) * 2 + 123)  # three chunks, the last one partial
    path = tmp_path / "weights.bin"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    assert file_sha256(str(path)) == hashlib.sha256(data).hexdigest()
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert file_sha256(empty) == hashlib.sha256(b"").hexdigest()


def test_cached_digest_follows_a_rewritten_file(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"first version")
    first = file_sha256_cached(path)
    assert first == hashlib.sha256(b"first version").hexdigest()
    path.write_bytes(b"second version, longer")
    assert file_sha256_cached(path) == hashlib.sha256(b"second version, longer").hexdigest()
