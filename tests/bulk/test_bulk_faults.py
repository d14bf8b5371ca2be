"""hamner bulk on a three-node Ray cluster on this machine (``ray.cluster_utils.Cluster``, loopback
only): a tagging or image actor's process killed during the run, or a whole node removed, and the
job still writes every input row exactly once, with the answers of a run without faults."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("pyarrow")

from ray.cluster_utils import Cluster  # noqa: E402

from bulk_helpers import comparable, make_posts, ray_workers, read_output, worker_env  # noqa: E402
from hamner.bulk.job import BulkOptions, _loopback_only, run_bulk  # noqa: E402
from synthetic import tiny_hamlearning_checkpoint  # noqa: E402

pytestmark = pytest.mark.slow

NODE = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A head (where the driver and the reads run, no CPU for actors) and two 1-CPU worker nodes.
    The test plug-ins are slow here (20 ms per image) so that faults land in the middle of a run."""
    if ray.is_initialized():
        ray.shutdown()
    _loopback_only(ray)
    saved = os.environ.get("HAMNER_TEST_BACKBONE_DELAY")
    os.environ["HAMNER_TEST_BACKBONE_DELAY"] = "0.02"  # inherited by every node's workers
    os.environ.update(worker_env())
    c = Cluster(initialize_head=True, head_node_args={**NODE, "num_cpus": 0})
    for _ in range(2):
        c.add_node(**NODE)
    c.wait_for_nodes()
    ray.init(address=c.address, logging_level="WARNING")
    yield c
    ray.shutdown()
    c.shutdown()
    if saved is None:
        os.environ.pop("HAMNER_TEST_BACKBONE_DELAY", None)
    else:
        os.environ["HAMNER_TEST_BACKBONE_DELAY"] = saved


@pytest.fixture(scope="module")
def setup(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("bulk-faults")
    ckpt = Path(str(tiny_hamlearning_checkpoint(base / "model")["ckpt"]))
    posts = make_posts(base / "in", 240, images=True)
    ref = base / "reference"
    run(ckpt, posts, ref)
    return {"ckpt": ckpt, "posts": posts, "reference": comparable(read_output(ref))}


def run(ckpt: Path, posts: Path, out: Path) -> dict[str, Any]:
    options = BulkOptions(
        model=str(ckpt), inputs=[str(posts)], output=str(out), on_bad_image="skip", rows_per_shard=20, part_rows=20,
        image_batch=4, tag_batch=20, image_actors=2, tag_actors=1, cpus_per_tag_actor=0.0, progress=False,
    )  # fmt: skip
    return run_bulk(options)


def run_with_fault(setup: dict[str, Any], out: Path, fault: Any) -> dict[str, Any]:
    """Run the job in a thread; once two shards are written, inject the fault; the job must finish."""
    result: dict[str, Any] = {}

    def job() -> None:
        try:
            result["summary"] = run(setup["ckpt"], setup["posts"], out)
        except BaseException as exc:  # reported to the test below
            result["error"] = exc

    thread = threading.Thread(target=job)
    thread.start()
    deadline = time.monotonic() + 300
    while len(list(out.glob("part-*"))) < 2 and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert thread.is_alive(), f"the job ended before the fault: {result}"
    fault()
    written_at_fault = len(list(out.glob("part-*")))
    thread.join(timeout=600)
    assert not thread.is_alive(), "the job did not finish after the fault"
    if "error" in result:
        raise result["error"]
    assert written_at_fault < len(list(out.glob("part-*"))), "no shard was written after the fault"
    return result["summary"]


def test_a_killed_actor_process_is_replaced_and_every_row_written_once(setup: dict[str, Any], tmp_path: Path) -> None:
    killed: list[int] = []

    def kill_an_actor() -> None:
        pids = ray_workers(b"ImageStage")
        assert pids, "no image actor process found"
        os.kill(pids[0], signal.SIGKILL)
        killed.append(pids[0])

    summary = run_with_fault(setup, tmp_path / "out", kill_an_actor)
    assert killed and summary["rows"] == 240
    rows = read_output(tmp_path / "out")
    assert len({(r["source"], r["line"]) for r in rows}) == len(rows) == 240
    assert comparable(rows) == setup["reference"]


def test_a_removed_node_does_not_lose_rows(setup: dict[str, Any], cluster: Cluster, tmp_path: Path) -> None:
    victim = cluster.worker_nodes and sorted(cluster.worker_nodes, key=lambda n: n.unique_id)[0]
    assert victim

    def remove_a_node() -> None:
        cluster.remove_node(victim, allow_graceful=False)
        cluster.add_node(**NODE)  # a replacement joins, as an autoscaler would bring one

    summary = run_with_fault(setup, tmp_path / "out", remove_a_node)
    assert summary["rows"] == 240
    rows = read_output(tmp_path / "out")
    assert len({(r["source"], r["line"]) for r in rows}) == len(rows) == 240
    assert comparable(rows) == setup["reference"]
