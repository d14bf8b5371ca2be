"""The output side of ``hamner bulk``: shards, what they hold, the manifest, and restarting.

Layout of an output folder::

    part-00000-000000000001-3f9a1c20b4.parquet   shards: rows sorted by (source, line)
    _index/part-00000-000000000001-3f9a1c20b4.json   per shard: its rows' line ranges per input file, counts
    _manifest.json                              fingerprints of the model, the inputs and the options; state
    _tmp/                                       shards being written (removed at the next start)

(Parquet readers skip names starting with ``_``: ``pandas.read_parquet(folder)`` reads the shards.)

**Commit protocol.** A writer task writes the shard under ``_tmp/``, then its index file (atomically,
by rename), then renames the shard into place: a shard is in the output exactly when its data file
is there, and then its index says which rows it holds. A shard's name is made from its rows' keys
(input file, line), so a writer task that Ray runs again after a failure rewrites the same file.

**Restart.** The same command on the same output folder reads the manifest (a different model,
different inputs or different options that change the answers are refused unless ``--overwrite``),
drops ``_tmp/`` and any index without its shard, and reads every index: the rows already written are
not read again (a part all written is not even opened). At the end every input row must be in
exactly one shard; rows missing (a Ray failure the job could not recover from) are tagged in another
attempt, up to ``--max-attempts``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from hamner.bulk.inputs import InputFile, Part
from hamner.errors import ConfigError

log = logging.getLogger(__name__)

OUTPUT_FORMATS = ("parquet", "jsonl")
MANIFEST = "_manifest.json"
INDEX_DIR = "_index"
TMP_DIR = "_tmp"
MANIFEST_VERSION = 1

Ranges = list[tuple[int, int]]  # inclusive line ranges, sorted


def output_schema() -> Any:
    """The columns of every shard (``relevance``, ``level_weights``, ``image_status``: a HamLearning
    model's; null for a text-only one)."""
    import pyarrow as pa

    entity = pa.struct([("text", pa.string()), ("type", pa.string()), ("start", pa.int64()), ("end", pa.int64())])
    return pa.schema(
        [
            ("id", pa.string()),
            ("source", pa.string()),
            ("line", pa.int64()),
            ("text", pa.string()),
            ("entities", pa.list_(entity)),
            ("relevance", pa.float64()),
            ("level_weights", pa.map_(pa.string(), pa.float64())),
            ("image_status", pa.string()),
            ("windows", pa.int32()),
            ("error", pa.string()),
            ("error_kind", pa.string()),
        ]
    )


def ranges_of(lines: Iterable[int]) -> Ranges:
    """Sorted inclusive runs of consecutive numbers: [1, 2, 3, 7] -> [(1, 3), (7, 7)]."""
    out: Ranges = []
    for n in sorted(lines):
        if out and n == out[-1][1] + 1:
            out[-1] = (out[-1][0], n)
        else:
            out.append((n, n))
    return out


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_shard(rows: list[dict[str, Any]], out_dir: str, sources: Sequence[str], fmt: str) -> dict[str, Any]:
    """Write output rows (``source`` is an index into ``sources``) as one shard, by the commit
    protocol above; returns its index record."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = sorted(rows, key=lambda r: (r["source"], r["line"]))
    keys = hashlib.sha256()
    per_source: dict[str, list[int]] = {}
    for r in rows:
        keys.update(f"{r['source']}:{r['line']};".encode())
        per_source.setdefault(sources[r["source"]], []).append(r["line"])
    first = rows[0]
    name = f"part-{first['source']:05d}-{first['line']:012d}-{keys.hexdigest()[:10]}"
    out = Path(out_dir)
    tmp = out / TMP_DIR / f"{name}.{uuid.uuid4().hex}"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    plain = [{**r, "source": sources[r["source"]]} for r in rows]
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(plain, schema=output_schema()), tmp)
    else:
        with tmp.open("wb") as fh:
            for r in plain:
                if r["level_weights"] is not None:  # a map column reads back as (key, value) pairs
                    r["level_weights"] = dict(r["level_weights"])
                fh.write((json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8", errors="backslashreplace"))
    errors = Counter(r["error_kind"] for r in rows if r["error_kind"] is not None)
    shard = f"{name}.{fmt}"
    record = {
        "shard": shard,
        "rows": len(rows),
        "entities": sum(len(r["entities"] or ()) for r in rows),
        "errors": dict(sorted(errors.items())),
        "ranges": {src: ranges_of(lines) for src, lines in per_source.items()},
    }
    (out / INDEX_DIR).mkdir(exist_ok=True)
    _atomic_write(out / INDEX_DIR / f"{name}.json", json.dumps(record).encode())
    os.replace(tmp, out / shard)
    return record


class ShardWriter:
    """Commits the tagged rows that reach the driver as shards: one when ``rows_per_shard`` rows have
    come, or when a commit interval has passed since the last commit (``first_seconds``, doubling up
    to ``max_seconds``), so that the first rows are in the output within seconds whatever the shard
    size, and a slow job's shards still fill up. A row that comes twice (a Ray retry) is written once."""

    def __init__(
        self, out_dir: str, sources: Sequence[str], rows: Sequence[int], fmt: str, rows_per_shard: int,
        first_seconds: float = 2.0, max_seconds: float = 60.0, clock: Any = time.monotonic,
    ) -> None:  # fmt: skip
        self.out_dir, self.sources, self.fmt, self.rows_per_shard = out_dir, list(sources), fmt, rows_per_shard
        self.seen = [bytearray(n + 1) for n in rows]  # per input file, 1 for each line this run received
        self.buffer: list[dict[str, Any]] = []
        self.interval, self.max_seconds, self.clock = first_seconds, max_seconds, clock
        self.last_commit = clock()
        self.written = 0
        self.lock = threading.Lock()  # a watcher thread may flush while the driver waits on Ray

    def add(self, rows: Iterable[dict[str, Any]]) -> int:
        """Take tagged rows (``source`` an index into ``sources``); returns how many were new."""
        with self.lock:
            return self._add(rows)

    def _add(self, rows: Iterable[dict[str, Any]]) -> int:
        new = 0
        for row in rows:
            seen = self.seen[row["source"]]
            if seen[row["line"]]:
                log.debug("row %s:%s came twice (a retried task); written once", self.sources[row["source"]], row["line"])
                continue
            seen[row["line"]] = 1
            self.buffer.append(row)
            new += 1
        while len(self.buffer) >= self.rows_per_shard:
            self._commit(self.buffer[: self.rows_per_shard])
            self.buffer = self.buffer[self.rows_per_shard :]
        if self.buffer and self.clock() - self.last_commit >= self.interval:
            self._commit(self.buffer)
            self.buffer = []
        return new

    def flush(self) -> None:
        with self.lock:
            if self.buffer:
                self._commit(self.buffer)
                self.buffer = []

    def _commit(self, rows: list[dict[str, Any]]) -> None:
        write_shard(rows, self.out_dir, self.sources, self.fmt)
        self.written += len(rows)
        self.last_commit = self.clock()
        self.interval = min(self.max_seconds, self.interval * 2)


def job_identity(model: dict[str, Any], files: Sequence[InputFile], options: dict[str, Any]) -> dict[str, Any]:
    """What the answers depend on: a rerun must match it to continue the same output."""
    return {"model": model, "inputs": [f.fingerprint() for f in files], "options": options}


def model_fingerprint(directory: str | Path) -> dict[str, Any]:
    """SHA-256 over a checkpoint folder's files (names and bytes): the weights, config and tokenizer."""
    root = Path(directory).resolve()
    if not root.is_dir():
        raise ConfigError(f"--model {directory}: no such checkpoint folder")
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return {"path": str(root), "sha256": digest.hexdigest()}


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out = []
    if old.get("model", {}).get("sha256") != new["model"]["sha256"]:
        out.append(f"the model ({old.get('model', {}).get('path')} then, {new['model']['path']} now)")
    old_inputs = {(f["path"], f["sha256"]) for f in old.get("inputs", [])}
    new_inputs = {(f["path"], f["sha256"]) for f in new["inputs"]}
    if old_inputs != new_inputs:
        gone = sorted(p for p, _ in old_inputs - new_inputs)
        added = sorted(p for p, _ in new_inputs - old_inputs)
        out.append(f"the inputs (no longer or changed: {gone[:3]}; new or changed: {added[:3]})")
    for key, value in new["options"].items():
        if old.get("options", {}).get(key) != value:
            out.append(f"option {key} ({old.get('options', {}).get(key)!r} then, {value!r} now)")
    return out


def open_output(directory: str | Path, identity: dict[str, Any], overwrite: bool) -> dict[str, Any]:
    """Make or reopen an output folder for a job; returns the manifest (``state`` says whether it
    is ``complete``). Another job's folder is refused unless ``overwrite``, which deletes what that
    job wrote (:func:`clear_output`). A folder that holds no manifest must be empty, ``overwrite`` or
    not, and a folder that holds one of the job's inputs is refused."""
    out = Path(directory)
    manifest_path = out / MANIFEST
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--output {out}: exists and is not a folder")
    _refuse_inputs_inside(out, identity)
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        diff = _differences(old, identity)
        if diff and not overwrite:
            raise ConfigError(
                f"--output {out} holds the output of another job: it differs in {'; '.join(diff)}. "
                "Pass --overwrite to delete it and start again, or choose another --output."
            )
        if diff:
            log.warning("--overwrite: deleting the output of another job in %s (%s)", out, "; ".join(diff))
            clear_output(out)
        else:
            cleanup(out, complete=old.get("state") == "complete")
            if old.get("state") != "complete":
                log.info("%s: continuing an interrupted job", out)
            return dict(old)
    elif out.exists() and any(out.iterdir()):
        raise ConfigError(
            f"--output {out} is not empty and holds no {MANIFEST}: not a hamner bulk output. Choose an empty or new folder "
            "(--overwrite only replaces a hamner bulk output, deleting the files its manifest and index name)."
        )
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"format_version": MANIFEST_VERSION, **identity, "state": "running", "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _atomic_write(manifest_path, (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest


def _refuse_inputs_inside(out: Path, identity: dict[str, Any]) -> None:
    """An output folder that is, or holds, one of the inputs could delete or mix with them: refused."""
    root = out.resolve()
    for f in identity.get("inputs", []):
        path = Path(f["path"]).resolve()
        if path == root or root in path.parents:
            raise ConfigError(f"--output {out} holds the input {path}: choose an output folder apart from the inputs")


def clear_output(out: Path) -> None:
    """Delete what a hamner bulk job wrote in ``out``: the shards its index names, the index, the
    temporary files and the manifest. Anything else is left where it is (and named in the log)."""
    for record in _index_records(out):
        shard = out / str(record.get("shard", ""))
        if shard.parent == out and shard.name.startswith("part-"):  # a name a bulk job gives, in this folder
            shard.unlink(missing_ok=True)
    for name in (INDEX_DIR, TMP_DIR):
        shutil.rmtree(out / name, ignore_errors=True)
    (out / MANIFEST).unlink(missing_ok=True)
    left = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if left:
        log.warning("--overwrite: %s holds %d file(s) no hamner bulk job wrote there, left as they are: %s", out, len(left), left[:5])


def _index_records(out: Path) -> list[dict[str, Any]]:
    folder = out / INDEX_DIR
    records = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            log.warning("%s: not a readable index file (%s); its shard is not deleted", path, exc)
    return records


def cleanup(out: Path, complete: bool = False) -> None:
    """Drop what an interrupted job left half-done: temporary files and index files without a shard
    (in a ``complete`` job's folder: a shard lost since, whose rows the job tags again)."""
    shutil.rmtree(out / TMP_DIR, ignore_errors=True)
    for index in (out / INDEX_DIR).glob("*.json") if (out / INDEX_DIR).is_dir() else ():
        record = json.loads(index.read_text())
        if not (out / record["shard"]).exists():
            if complete:
                log.warning("%s: the shard %s of this finished job is gone; its %d rows are tagged again", out, record["shard"], record["rows"])
            else:
                log.info("%s: removing the index of a shard that was never committed", index.name)
            index.unlink()


def read_index(out: str | Path) -> list[dict[str, Any]]:
    """The index records of the committed shards."""
    folder = Path(out) / INDEX_DIR
    if not folder.is_dir():
        return []
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    return [r for r in records if (Path(out) / r["shard"]).exists()]


def done_ranges(records: Iterable[dict[str, Any]]) -> dict[str, Ranges]:
    """Every written line range per input file (overlaps kept: :func:`check_complete` finds them)."""
    out: dict[str, Ranges] = {}
    for r in records:
        for src, ranges in r["ranges"].items():
            out.setdefault(src, []).extend((int(a), int(b)) for a, b in ranges)
    return {src: sorted(ranges) for src, ranges in out.items()}


def pending_parts(parts: Sequence[Part], done: dict[str, Ranges]) -> list[Part]:
    """The parts with rows still to write, each told which of its lines are done."""
    out = []
    for part in parts:
        last = part.first_line + part.rows - 1
        inside = [(max(a, part.first_line), min(b, last)) for a, b in done.get(part.path, []) if a <= last and b >= part.first_line]
        covered = sum(b - a + 1 for a, b in merge(inside))
        if covered < part.rows:
            out.append(replace(part, done=tuple(merge(inside))))
    return out


def merge(ranges: Iterable[tuple[int, int]]) -> Ranges:
    out: Ranges = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def check_complete(files: Sequence[InputFile], done: dict[str, Ranges]) -> tuple[int, list[str]]:
    """(rows still missing, problems): every line of every input in exactly one shard."""
    missing, problems = 0, []
    for f in files:
        ranges = done.get(f.path, [])
        reach = 0  # the last line covered by the ranges so far (they are sorted by start)
        for a, b in ranges:
            if a <= reach:
                problems.append(f"{f.path}: lines {a}-{min(b, reach)} are in two shards")
            reach = max(reach, b)
        covered = sum(b - a + 1 for a, b in merge(ranges))
        missing += f.rows - covered
        if ranges and (ranges[0][0] < 1 or ranges[-1][1] > f.rows):
            problems.append(f"{f.path}: shards hold lines outside 1-{f.rows}")
    return missing, problems


def summarise(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    rows, entities, errors = 0, 0, Counter[str]()
    for r in records:
        rows += r["rows"]
        entities += r["entities"]
        errors.update(r["errors"])
    return {"rows": rows, "entities": entities, "errors": dict(sorted(errors.items())), "error_rows": sum(errors.values())}


def pin_runtime(directory: str | Path, manifest: dict[str, Any], runtime: dict[str, Any], overwrite: bool) -> dict[str, Any]:
    """Record where and how the job tags (device, precision: known once the cluster is), or check
    that a rerun tags as the rows already written were: mixing them is refused unless ``overwrite``,
    which deletes them and starts again. Returns the manifest."""
    out = Path(directory)
    old = manifest.get("runtime")
    if old == runtime:
        return manifest
    if old is not None and read_index(out):
        diff = [f"{key} ({old.get(key)!r} then, {value!r} now)" for key, value in runtime.items() if old.get(key) != value]
        if not overwrite:
            raise ConfigError(
                f"--output {out} holds rows tagged with other settings that change the answers: {'; '.join(diff)}. "
                "Rerun with the same --device and --precision to finish it, pass --overwrite to delete it and start again, "
                "or choose another --output."
            )
        log.warning("--overwrite: deleting the rows of %s tagged with other settings (%s)", out, "; ".join(diff))
        clear_output(out)
        manifest = {**manifest, "state": "running", "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        manifest.pop("summary", None)
    manifest = {**manifest, "runtime": runtime}
    _atomic_write(out / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest


def reopen(directory: str | Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """A finished job's folder that lost rows (a shard deleted) is running again."""
    manifest = {k: v for k, v in manifest.items() if k not in ("summary", "completed")}
    manifest["state"] = "running"
    _atomic_write(Path(directory) / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest


def finish(directory: str | Path, manifest: dict[str, Any], summary: dict[str, Any]) -> None:
    shutil.rmtree(Path(directory) / TMP_DIR, ignore_errors=True)
    done = {**manifest, "state": "complete", "completed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "summary": summary}
    _atomic_write(Path(directory) / MANIFEST, (json.dumps(done, indent=2) + "\n").encode())
