"""A ``hamner bulk`` job on Ray Data: the only module of hamner that imports Ray.

Pipeline (one Ray Data dataset, streamed): the parts of the inputs (:mod:`hamner.bulk.inputs`) ->
``read_parts`` in tasks -> ``ImageStage`` in an actor pool (HamLearning models only) -> ``TagStage``
in an actor pool (on GPUs when asked for) -> the driver, which counts the tagged rows as they come
(the progress bar) and commits them as shards (:class:`hamner.bulk.output.ShardWriter`).

Embedded (no ``address``): a local Ray with this machine's cores, no dashboard, every process bound
to 127.0.0.1. ``address="auto"`` or ``"ray://host:10001"`` joins a running cluster (its workers need
hamner installed, and the inputs and the output folder on a file system every node sees).
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hamner.bulk import output as out_mod
from hamner.bulk.inputs import InputFile, find_inputs, index_file, make_parts
from hamner.bulk.stages import ON_BAD_IMAGE, ImageStage, TagStage, is_multimodal, read_parts
from hamner.errors import ConfigError, HamnerError

log = logging.getLogger(__name__)


@dataclass
class BulkOptions:
    model: str
    inputs: list[str]
    output: str
    output_format: str = "parquet"
    images_root: str | None = None
    on_bad_image: str = "error"
    on_bad_text: str = "error"
    max_line_bytes: int = 1 << 20
    overwrite: bool = False
    # Ray: where, and how much
    address: str | None = None  # None: embedded
    num_cpus: int | None = None  # embedded only; default: this machine's cores
    num_gpus: int | None = None  # embedded only; default: Ray's detection
    object_store_mb: int | None = None  # embedded only
    # the pipeline's sizes (None: chosen from the cluster's resources, see plan())
    part_rows: int = 512  # input rows per read task (Ray Data hands a read block to one actor: keep it small)
    rows_per_shard: int = 10_000  # at most; a shard is also committed when commit_seconds have passed
    commit_seconds: float = 60.0  # the longest wait between commits (the first comes after 2 s, then 4, 8, ...)
    tag_batch: int = 256  # rows per call of a tagging actor
    model_batch: int = 32  # posts per forward pass inside it
    image_batch: int = 16  # rows per call of an image actor
    tag_actors: int | None = None
    image_actors: int | None = None
    cpus_per_tag_actor: float | None = None
    cpus_per_image_actor: float = 1.0
    gpus_per_tag_actor: float | None = None
    io_tasks: int | None = None  # concurrent read and write tasks, each
    device: str | None = None  # the tagging actors' torch device; default: cuda with GPUs, else cpu
    precision: str = "auto"
    max_attempts: int = 3
    progress: bool = True
    runtime_env: dict[str, Any] = field(default_factory=dict)

    def identity_options(self) -> dict[str, Any]:
        """The options that change the answers, known before Ray starts (a rerun must keep them).
        ``long_posts`` is the Tagger's default, which bulk does not change: recorded so that a later
        default cannot mix answers. The device and the precision they resolve to are the job's
        ``runtime`` (:func:`runtime_identity`), checked once the cluster is known."""
        return {
            "output_format": self.output_format, "images_root": self.images_root, "on_bad_image": self.on_bad_image,
            "on_bad_text": self.on_bad_text, "max_line_bytes": self.max_line_bytes, "long_posts": "window",
        }  # fmt: skip

    def check(self) -> None:
        if self.output_format not in out_mod.OUTPUT_FORMATS:
            raise ConfigError(f"output format must be one of {out_mod.OUTPUT_FORMATS}, got {self.output_format!r}")
        if self.on_bad_image not in ON_BAD_IMAGE:
            raise ConfigError(f"on_bad_image must be one of {ON_BAD_IMAGE}, got {self.on_bad_image!r}")
        for name in ("part_rows", "rows_per_shard", "tag_batch", "model_batch", "image_batch", "max_attempts"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.commit_seconds > 0:
            raise ConfigError(f"commit_seconds must be positive, got {self.commit_seconds}")
        from hamner.precision import PRECISIONS

        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.images_root is not None and not Path(self.images_root).is_dir():
            raise ConfigError(f"--images-root {self.images_root}: no such folder")


def _loopback_only(ray: Any) -> None:
    """Ray 2.x on Linux turns a node IP of 127.0.0.1 into the machine's interface address
    (``services.resolve_ip_for_localhost``) unless clusters are switched off, as on macOS and
    Windows: an embedded instance switches them off, so that every Ray process binds to loopback."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # for the processes Ray starts
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False  # read at call time by services.get_node_ip_address


@contextmanager
def ray_session(options: BulkOptions) -> Iterator[Any]:
    """Use a Ray already initialised by the caller, else start an embedded one or join a cluster
    (and shut it down afterwards)."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING}
    if options.runtime_env:
        kwargs["runtime_env"] = options.runtime_env
    if options.address is None:
        _loopback_only(ray)
        if os.environ.pop("RAY_ADDRESS", None):
            log.info("RAY_ADDRESS is ignored: without --address hamner bulk runs an embedded Ray (--address auto joins a cluster)")
        kwargs.update(
            address="local", _node_ip_address="127.0.0.1", num_cpus=options.num_cpus or os.cpu_count() or 1,
            include_dashboard=False,
        )  # fmt: skip
        if options.num_gpus is not None:
            kwargs["num_gpus"] = options.num_gpus
        if options.object_store_mb is not None:
            kwargs["object_store_memory"] = options.object_store_mb << 20
        log.info("starting an embedded Ray: %d CPUs, bound to 127.0.0.1, no dashboard", kwargs["num_cpus"])
    else:
        if options.num_cpus or options.num_gpus or options.object_store_mb:
            raise ConfigError("--num-cpus, --num-gpus and --object-store-mb size an embedded Ray; a cluster has its own (ray start)")
        kwargs["address"] = options.address
        log.info("joining the Ray cluster at %s", options.address)
    try:
        ray.init(**kwargs)
    except Exception as exc:
        # Ray 2.59+ switches token authentication on for clusters started with 'ray start --head'
        if options.address is not None and type(exc).__name__ == "AuthenticationError":
            raise ConfigError(
                f"the Ray cluster at {options.address} wants an authentication token: set RAY_AUTH_MODE=token here and "
                "copy the head's ~/.ray/auth_token to this machine (or set RAY_AUTH_TOKEN); see docs/bulk.md"
            ) from exc
        raise
    try:
        yield ray
    finally:
        ray.shutdown()


@dataclass
class Plan:
    """The pipeline's sizes for the resources at hand."""

    cpus: float
    gpus: float
    tag_actors: int
    cpus_per_tag_actor: float
    gpus_per_tag_actor: float
    image_actors: int
    cpus_per_image_actor: float
    io_tasks: int
    device: str

    def describe(self, multimodal: bool) -> str:
        where = f"{self.gpus_per_tag_actor:g} GPU" if self.gpus_per_tag_actor else f"{self.cpus_per_tag_actor:g} CPU"
        text = f"{self.tag_actors} tagging actor(s) x {where}"
        if multimodal:
            text += f", {self.image_actors} image actor(s) x {self.cpus_per_image_actor:g} CPU"
        return text + f", {self.io_tasks} read and {self.io_tasks} write task(s) at a time"


def plan(options: BulkOptions, resources: dict[str, float], multimodal: bool) -> Plan:
    """Defaults: tagging on every GPU (one actor each) when the cluster has GPUs. On CPUs alone a
    text-only model gets one 1-CPU tagging actor per CPU; a HamLearning model gives every CPU to the
    image actors (the image models are the slow part: about 10 images/s per 2 CPUs against about 100
    posts/s for the text model) and runs one tagging actor per 16 CPUs (at least one) in the gaps,
    reserving no CPU for it. Reads and writes are light (no CPU reserved) and run a few at a time."""
    cpus, gpus = float(resources.get("CPU", 1)), float(resources.get("GPU", 0))
    gpt = options.gpus_per_tag_actor if options.gpus_per_tag_actor is not None else (1.0 if gpus >= 1 else 0.0)
    if gpt:
        cpt = options.cpus_per_tag_actor if options.cpus_per_tag_actor is not None else 1.0
        tag_actors = options.tag_actors or max(1, int(gpus // gpt))
    elif multimodal:
        cpt = options.cpus_per_tag_actor if options.cpus_per_tag_actor is not None else 0.0
        tag_actors = options.tag_actors or max(1, int(cpus // 16))
    else:
        cpt = options.cpus_per_tag_actor if options.cpus_per_tag_actor is not None else 1.0
        tag_actors = options.tag_actors or max(1, int(cpus // max(cpt, 1e-9)))
    left = max(0.0, cpus - (0 if gpt else tag_actors * cpt))
    cpi = options.cpus_per_image_actor
    image_actors = options.image_actors or max(1, int(left // cpi))
    io = options.io_tasks or max(1, min(8, int(cpus // 8) or 1))
    device = options.device or ("cuda" if gpt else "cpu")
    return Plan(cpus, gpus, tag_actors, cpt, gpt, image_actors, cpi, io, device)


def index_inputs(options: BulkOptions) -> list[InputFile]:
    files = find_inputs(options.inputs)
    t0 = time.perf_counter()
    indexed = [index_file(p, options.part_rows) for p in files]
    log.info(
        "%d input file(s), %s rows, %.1f MB, indexed and fingerprinted in %.1f s",
        len(indexed), f"{sum(f.rows for f in indexed):,}", sum(f.size for f in indexed) / 1e6, time.perf_counter() - t0,
    )  # fmt: skip
    return indexed


def build_dataset(ray: Any, options: BulkOptions, parts: list[Any], p: Plan, multimodal: bool) -> Any:
    """Read -> (images) -> tagging; the driver takes the tagged rows and writes the shards."""
    import ray.data
    from ray.data import ActorPoolStrategy, TaskPoolStrategy

    threads = max(1, int(p.cpus_per_tag_actor))  # a tagging actor reserving no CPU still runs one thread
    ds = ray.data.from_items([{"part": json.dumps(part.to_dict())} for part in parts], override_num_blocks=len(parts))
    ds = ds.map_batches(
        read_parts, batch_size=1, batch_format="pyarrow", num_cpus=0, compute=TaskPoolStrategy(size=p.io_tasks),
        fn_kwargs={"on_bad_text": options.on_bad_text, "max_line_bytes": options.max_line_bytes},
    )  # fmt: skip
    if multimodal:
        ds = ds.map_batches(
            ImageStage, batch_size=options.image_batch, batch_format="pyarrow", num_cpus=p.cpus_per_image_actor,
            compute=ActorPoolStrategy(size=p.image_actors),
            fn_constructor_kwargs={"model_dir": options.model, "on_bad_image": options.on_bad_image, "threads": max(1, int(p.cpus_per_image_actor))},
        )  # fmt: skip
    ds = ds.map_batches(
        TagStage, batch_size=options.tag_batch, batch_format="pyarrow", num_cpus=p.cpus_per_tag_actor,
        num_gpus=p.gpus_per_tag_actor or None, compute=ActorPoolStrategy(size=p.tag_actors),
        fn_constructor_kwargs={
            "model_dir": options.model, "device": p.device, "batch_size": options.model_batch,
            "precision": options.precision, "threads": threads,
        },
    )  # fmt: skip
    return ds


def _quiet_ray_data(ray: Any, verbose: bool) -> None:
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = verbose  # hamner's own bar counts rows written
    ctx.print_on_execution_start = verbose
    if not verbose:
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        # a small input (fewer parts than actors) is not worth a warning
        warnings.filterwarnings("ignore", message="The minimum number of concurrent actors", category=UserWarning)


def runtime_identity(options: BulkOptions, p: Plan) -> dict[str, str]:
    """Where and how the rows are tagged, both of which change answers (bf16 changed 7 of 1,000 posts):
    the device the plan gives and the precision it means there (``auto`` on a GPU is bf16 where the
    GPU has it, which only the tagging actor sees)."""
    device = p.device
    if options.precision != "auto":
        precision = options.precision
    elif device.split(":")[0] == "cpu":
        precision = "fp32"
    else:
        precision = "auto (bf16 where the GPU has it, else fp32)"
    return {"device": device, "precision": precision}


def run_bulk(options: BulkOptions) -> dict[str, Any]:
    """Run (or finish) a bulk job; returns the summary: rows, entities, errors by kind, rows/s."""
    options.check()
    multimodal = is_multimodal(options.model)
    files = index_inputs(options)
    identity = out_mod.job_identity(out_mod.model_fingerprint(options.model), files, options.identity_options())
    manifest = out_mod.open_output(options.output, identity, options.overwrite)
    total = sum(f.rows for f in files)
    all_parts = make_parts(files, options.images_root)
    missing, _ = out_mod.check_complete(files, out_mod.done_ranges(out_mod.read_index(options.output)))
    if manifest.get("state") == "complete" and missing:
        log.warning("%s: a finished job with %d rows missing (a shard deleted since): tagging them again", options.output, missing)
        manifest = out_mod.reopen(options.output, manifest)
    t0 = time.perf_counter()
    written_now, attempts = 0, 0
    if manifest.get("state") != "complete":
        written_now, attempts = _tag_missing(options, files, all_parts, manifest, total, multimodal)
    seconds = time.perf_counter() - t0
    records = out_mod.read_index(options.output)
    missing, problems = out_mod.check_complete(files, out_mod.done_ranges(records))
    if problems:
        raise ConfigError(f"{options.output}: the shards do not hold each input row exactly once: {'; '.join(problems[:5])}")
    if missing:
        raise ConfigError(
            f"{options.output}: {missing} input rows were not written after {attempts} attempt(s) "
            "(each after a failure Ray could not recover from); rerun the same command to finish"
        )
    summary = out_mod.summarise(records)
    summary.update(
        inputs=len(files), input_rows=total, rows_this_run=written_now, seconds=round(seconds, 2),
        rows_per_s=round(written_now / seconds, 1) if seconds > 0 and written_now else None, output=str(options.output),
    )  # fmt: skip
    manifest = json.loads((Path(options.output) / out_mod.MANIFEST).read_text())
    if manifest.get("state") != "complete":
        out_mod.finish(options.output, manifest, {k: v for k, v in summary.items() if k not in ("seconds", "rows_per_s", "rows_this_run")})
    return summary


def _tag_missing(
    options: BulkOptions, files: list[InputFile], all_parts: list[Any], manifest: dict[str, Any], total: int, multimodal: bool
) -> tuple[int, int]:
    """Tag and write every row not yet in the output, in up to ``max_attempts`` passes; returns
    (rows written, passes made). The bar counts rows as the tagging actors hand them over."""
    sources = [f.path for f in files]
    writer = out_mod.ShardWriter(
        str(Path(options.output).resolve()), sources, [f.rows for f in files], options.output_format, options.rows_per_shard,
        max_seconds=options.commit_seconds,
    )  # fmt: skip
    with ray_session(options) as ray, _raylet_watch(ray, options, writer) as watch:
        try:
            attempts = _attempts(ray, options, all_parts, manifest, total, multimodal, writer)
        except KeyboardInterrupt:
            if watch.died is None:
                raise
            raise RayletDied(watch.died) from None
    return writer.written, attempts


def _attempts(
    ray: Any, options: BulkOptions, all_parts: list[Any], manifest: dict[str, Any], total: int, multimodal: bool,
    writer: out_mod.ShardWriter,
) -> int:
    """The passes over the rows still missing (after a failure Ray could not recover from); returns
    how many were made. The bar counts rows as the tagging actors hand them over."""
    from tqdm.auto import tqdm

    attempts = 0
    _quiet_ray_data(ray, log.isEnabledFor(logging.DEBUG))
    p = plan(options, ray.cluster_resources(), multimodal)
    log.info("%s model; %s", "HamLearning" if multimodal else "text-only", p.describe(multimodal))
    out_mod.pin_runtime(options.output, manifest, runtime_identity(options, p), options.overwrite)
    done_before = sum(r["rows"] for r in out_mod.read_index(options.output))
    bar = tqdm(total=total, initial=done_before, unit="row", desc="bulk", disable=not options.progress, smoothing=0.1)
    with bar:
        for attempt in range(1, options.max_attempts + 1):
            parts = out_mod.pending_parts(all_parts, out_mod.done_ranges(out_mod.read_index(options.output)))
            if not parts:
                break
            attempts = attempt
            if attempt > 1:
                log.warning("attempt %d: %d part(s) still have rows to write", attempt, len(parts))
            ds = build_dataset(ray, options, parts, p, multimodal)
            try:
                for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                    bar.update(writer.add(batch.to_pylist()))
            except Exception as exc:  # a Ray failure it could not recover from: what is tagged is written
                if attempt == options.max_attempts or not _is_ray_failure(ray, exc):
                    raise
                log.warning("attempt %d failed (%s: %s); the rows tagged so far are kept", attempt, type(exc).__name__, exc)
            finally:
                writer.flush()
    return attempts


class RayletDied(HamnerError):
    """The embedded Ray's raylet died under the job."""


@dataclass
class _Watch:
    died: str | None = None  # what happened, once the raylet is gone


@contextmanager
def _raylet_watch(ray: Any, options: BulkOptions, writer: out_mod.ShardWriter) -> Iterator[_Watch]:
    """An embedded Ray whose raylet dies (killed, or by the out-of-memory killer) ends this process
    from inside Ray, with exit status 1 and no word of its own, about 15 s later: a watcher thread
    notices, writes the tagged rows the driver holds, says what happened, and interrupts the driver
    (which stops with that message if Ray gives it the time)."""
    watch = _Watch()
    node = getattr(ray._private.worker, "_global_node", None) if options.address is None else None
    infos = (getattr(node, "all_processes", None) or {}).get("raylet") or []
    raylet = infos[0].process if infos else None
    if raylet is None:
        yield watch
        return
    import _thread
    import threading

    stop = threading.Event()

    def run() -> None:
        while not stop.wait(0.2):
            if raylet.poll() is not None:
                writer.flush()
                watch.died = (
                    f"the embedded Ray's raylet (pid {raylet.pid}) died (exit status {raylet.returncode}: killed, or out of "
                    f"memory?) and the job cannot go on. The rows tagged so far are written in {options.output}; rerun the "
                    "same command to finish."
                )
                log.error("%s", watch.died)
                _thread.interrupt_main()
                return

    thread = threading.Thread(target=run, name="hamner-raylet-watch", daemon=True)
    thread.start()
    try:
        yield watch
    finally:
        stop.set()


def _is_ray_failure(ray: Any, exc: BaseException) -> bool:
    """A failure of the cluster (a lost object, node or actor), not of hamner's own code."""
    from ray import exceptions

    lost = (exceptions.ObjectLostError, exceptions.RayActorError, exceptions.NodeDiedError, exceptions.WorkerCrashedError)
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, lost) or type(seen).__name__ in {"OwnerDiedError", "ObjectReconstructionFailedError"}:
            return True
        seen = seen.__cause__ or seen.__context__
    return False
