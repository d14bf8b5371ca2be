"""Shared pieces of the hamner bulk tests: posts with images and bad rows, output readers, processes."""

from __future__ import annotations

import json
import os
import random
import signal
from pathlib import Path
from typing import Any

from conftest import REPO, shared_data_root
from fakes import scene

TESTS = Path(__file__).resolve().parent
WORDS = "obama trump paris london new york nba apple google festival game team fans police music show city".split()


def sample_images(limit: int = 6) -> list[Path]:
    """Some of the real sample images of ../shared/data (empty when the data is not there)."""
    root = shared_data_root()
    if root is None:
        return []
    return sorted(root.glob("twitter20*/images/*.jpg"))[:limit]


def make_posts(folder: Path, n: int, seed: int = 0, images: bool = False, name: str = "posts.jsonl") -> Path:
    """``n`` JSONL posts; with ``images``, most have an image (drawn, or a sample one; relative or
    absolute paths), some a caption, a few a missing image."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    pics: list[str] = []
    if images:
        (folder / "img").mkdir(exist_ok=True)
        for k in range(4):
            scene(red=(5 + 10 * k, 5, 40 + 10 * k, 30)).save(folder / "img" / f"drawn{k}.png")
            pics.append(f"img/drawn{k}.png")  # relative to the JSONL's folder
        pics += [str(p) for p in sample_images()]  # absolute
    lines = []
    for i in range(n):
        rec: dict[str, Any] = {"id": f"p{i}", "text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))}
        if images and i % 5 != 4:
            rec["image"] = pics[i % len(pics)] if i % 17 != 3 else "img/gone.jpg"
        if images and i % 3 == 0:
            rec["caption"] = "a red square and a blue one"
        lines.append(json.dumps(rec))
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return path


def bad_rows_file(folder: Path) -> tuple[Path, list[tuple[int, str | None]]]:
    """A JSONL file with a bad row of every kind, between good ones: (path, expected error_kind per line)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "truncated.png").write_bytes(_png_bytes()[:200])
    (folder / "notimage.jpg").write_text("not an image at all")
    (folder / "big.png").write_bytes(_png_header(20_000, 20_000))  # 400 megapixels: refused before decoding
    rows: list[tuple[bytes, str | None]] = [
        (b'{"id": "ok1", "text": "obama in paris", "image": "img.png"}', None),
        (b'{"id": "badjson", "text": "obama', "invalid_json"),
        (b"", "empty_text"),  # an empty line in JSONL: an empty post, as hamner tag answers it
        (b'{"id": "notext"}', "no_text"),
        (b'{"id": "numtext", "text": 12}', "no_text"),
        (b'{"id": "empty", "text": "   "}', "empty_text"),
        (b'{"id": "extra", "text": "obama", "lang": "en"}', "unknown_field"),
        (b'{"id": "capnum", "text": "obama", "caption": 3}', "bad_field"),
        (b'{"id": "surr", "text": "obama \\ud83d"}', "invalid_unicode"),
        (b"bad \xff utf8", "invalid_utf8"),
        (b'{"id": "long", "text": "' + b"a" * 3000 + b'"}', "line_too_long"),
        (b'{"id": "missing", "text": "obama in london", "image": "nowhere.jpg"}', "image_missing"),
        (b'{"id": "unreadable", "text": "nba game", "image": "notimage.jpg"}', "image_unreadable"),
        (b'{"id": "truncated", "text": "nba game", "image": "truncated.png"}', "image_truncated"),
        (b'{"id": "toolarge", "text": "nba game", "image": "big.png"}', "image_too_large"),
        (b'{"id": "ok2", "text": "the nba game today"}', None),
    ]
    scene().save(folder / "img.png")
    path = folder / "bad.jsonl"
    path.write_bytes(b"\n".join(raw for raw, _ in rows) + b"\n")
    return path, [(k + 1, kind) for k, (_, kind) in enumerate(rows)]


def _png_header(width: int, height: int) -> bytes:
    """A PNG that says it is ``width`` x ``height`` (greyscale) and holds no pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + chunk(b"IEND", b"")


def _png_bytes() -> bytes:
    import io

    buf = io.BytesIO()
    scene(200, 150).save(buf, format="PNG")
    return buf.getvalue()


def read_output(folder: Path) -> list[dict[str, Any]]:
    """Every row of a bulk output folder (Parquet or JSONL shards), sorted by (source, line)."""
    rows: list[dict[str, Any]] = []
    for shard in sorted(folder.glob("part-*")):
        if shard.suffix == ".parquet":
            import pyarrow.parquet as pq

            rows += pq.read_table(shard).to_pylist()
        else:
            rows += [json.loads(line) for line in shard.read_text().splitlines()]
    return sorted(rows, key=lambda r: (r["source"], r["line"]))


def comparable(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What must not change between runs: the keys, entities, errors, image status (and r to 1e-5)."""
    out = []
    for r in rows:
        ents = [(e["text"], e["type"], e["start"], e["end"]) for e in r["entities"]] if r["entities"] is not None else None
        rel = round(r["relevance"], 5) if r["relevance"] is not None else None
        out.append((r["source"], r["line"], r["id"], ents, r["error"], r["error_kind"], r["image_status"], rel))
    return out


def worker_env() -> dict[str, str]:
    """The environment Ray workers need here: this checkout's sources and the test plug-ins (fakes)."""
    path = os.pathsep.join([str(REPO / "src"), str(TESTS), os.environ.get("PYTHONPATH", "")])
    return {"PYTHONPATH": path.rstrip(os.pathsep), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def processes() -> dict[int, tuple[int, bytes]]:
    """pid -> (parent pid, command line) of every process we can see."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        out[int(entry)] = (ppid, cmd)
    return out


def descendants(root: int) -> list[int]:
    procs = processes()
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        kids = [pid for pid, (ppid, _) in procs.items() if ppid == parent]
        found += kids
        frontier += kids
    return found


def ray_workers(marker: bytes) -> list[int]:
    """Ray worker processes whose title holds ``marker`` (e.g. b"TagStage"), among our descendants."""
    procs = processes()
    mine = set(descendants(os.getpid()))
    return [pid for pid, (_, cmd) in procs.items() if pid in mine and cmd.startswith(b"ray::") and marker in cmd]


def listening_addresses(pids: list[int]) -> list[str]:
    """The local addresses of the TCP sockets the given processes listen on (from /proc/net/tcp*)."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    out = []
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, state, inode = parts[1], parts[3], parts[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            addr = local.split(":")[0]
            if v6 and addr == "00000000000000000000000001000000":
                out.append("::1")
            elif v6 and not addr.startswith("0000000000000000FFFF0000"):
                out.append(f"v6:{addr}")
            else:  # IPv4, or IPv4 mapped into IPv6 (::ffff:a.b.c.d): the last word, little-endian
                out.append(".".join(str(int(addr[-8:][i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return out


def kill_group(proc: Any) -> None:
    """SIGKILL a process started with start_new_session=True and everything it started (its group,
    and any descendant that left the group)."""
    family = descendants(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for pid in family:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def fuzz_file(folder: Path) -> Path:
    """A JSONL file holding, between good posts, every kind of bad input ``hamner tag``'s tests feed
    it (tests/inference/test_tag_stream.py, test_real_input.py) and more: bad UTF-8, unpaired
    surrogates in each field, control characters, huge numbers, deep nesting, wrong types, empty and
    blank lines, an over-long line, bad and missing images. ``max_line_bytes=4000`` makes the long
    line over the limit."""
    folder.mkdir(parents=True, exist_ok=True)
    scene().save(folder / "ok.png")
    (folder / "truncated.png").write_bytes(_png_bytes()[:200])
    (folder / "notimage.jpg").write_text("not an image at all")
    (folder / "big.png").write_bytes(_png_header(20_000, 20_000))
    (folder / "adir.png").mkdir(exist_ok=True)
    deep = "[" * 1500 + "]" * 1500  # deeper than the JSON parser's recursion limit
    objects: list[str] = [
        '{"id": "ok", "text": "Merkel in Berlin", "image": "ok.png", "caption": "a red square"}',
        '{"id": "cap-surr", "text": "Merkel in Berlin", "caption": "bad \\udc00 caption"}',
        '{"id": "img-surr", "text": "Merkel in Berlin", "image": "bad\\udc00.png"}',
        '{"id": "text-surr", "text": "Merkel \\ud83d in Berlin"}',
        '{"id": "\\udc00", "text": "Merkel in Berlin"}',
        '{"id": "all-surr\\ud800", "text": "\\udfff", "image": "\\ud800", "caption": "\\udbff"}',
        '{"id": "fs", "text": "\\u001c"}', '{"id": "gs", "text": "\\u001d"}', '{"id": "rs", "text": "\\u001e"}',
        '{"id": "us", "text": "\\u001f", "image": "ok.png"}', '{"id": "nul", "text": "\\u0000"}',
        '{"id": "nel", "text": "\\u0085\\u2028\\u2029"}', '{"id": "zw", "text": "\\u200b\\ufeff\\u200d"}',
        '{"id": "ctl", "text": "Merkel\\u0007 in\\u001b Berlin\\u007f"}',
        '{"id": "empty", "text": ""}', '{"id": "blank", "text": "  \\t  "}',
        '{"id": "empty-img", "text": "", "image": "ok.png"}',
        '{"id": 1' + "0" * 5000 + ', "text": "huge int id"}',
        '{"id": "hugefloat", "text": "Merkel", "caption": null, "image": null}',
        '{"id": 1e999, "text": "infinite id"}', '{"id": -0.0, "text": "negative zero id"}',
        '{"id": [1, {"a": null}], "text": "nested id"}', '{"id": true, "text": "bool id"}', '{"id": null, "text": "null id"}',
        '{"id": "deep", "text": ' + deep + "}", deep, '{"id": "nested", "text": {"a": [1, 2]}}',
        '{"id": "numtext", "text": 12}', '{"id": "listtext", "text": ["a"]}', '{"id": "nulltext", "text": null}',
        '{"id": "notext"}', '{"id": "capnum", "text": "Merkel", "caption": 3}', '{"id": "imgnum", "text": "Merkel", "image": 7}',
        '{"id": "imglist", "text": "Merkel", "image": ["ok.png"]}', '{"id": "extra", "text": "Merkel", "lang": "de"}',
        '{"id": "dup", "text": "first", "text": "second"}', "[1, 2]", '"just a string"', "null", "12", "{not json}",
        '{"id": "trunc", "text": "Merkel', '{"id": "missing", "text": "Merkel in Berlin", "image": "nowhere.jpg"}',
        '{"id": "unreadable", "text": "Merkel", "image": "notimage.jpg"}',
        '{"id": "truncated", "text": "Merkel", "image": "truncated.png"}',
        '{"id": "toolarge", "text": "Merkel", "image": "big.png"}', '{"id": "dirimg", "text": "Merkel", "image": "adir.png"}',
        '{"id": "emptyimg", "text": "Merkel", "image": ""}', '{"id": "nulimg", "text": "Merkel", "image": "a\\u0000b.png"}',
        '{"id": "long", "text": "' + "Merkel " * 700 + '"}',
        '{"id": "many", "text": "' + "! " * 1500 + '"}',
        '{"id": "last", "text": "the nba game in Berlin"}',
    ]
    raw: list[bytes] = [o.encode() for o in objects]
    raw[1:1] = [b"bad \xff utf8", b'{"id": "badutf", "text": "Merkel \xc3\x28"}', b"", b"   ", b"\r", b"\xef\xbb\xbf{}"]
    path = folder / "fuzz.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(raw))  # a byte order mark first, no line break at the end
    return path
