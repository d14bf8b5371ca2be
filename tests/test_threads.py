"""The tagging thread count: usable CPUs (affinity, cgroup quota) and the governor that gives way to
other processes (hamner.threads), and its use by the Tagger and exported models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from hamner import threads as T
from hamner.threads import CpuSample, CpuWatch, ThreadGovernor


class FakeWatch:
    """A CpuWatch whose samples are given: ``others`` CPUs busy with other processes per second."""

    def __init__(self) -> None:
        self.t, self.busy, self.own = 0.0, 0.0, 0.0

    def advance(self, seconds: float, others: float, own: float) -> None:
        self.t += seconds
        self.busy += seconds * (others + own)
        self.own += seconds * own

    def sample(self) -> CpuSample:
        return CpuSample(self.t, self.busy, self.own)


def governed(cpus: int = 2) -> tuple[ThreadGovernor, FakeWatch]:
    watch = FakeWatch()
    gov = ThreadGovernor(cpus=cpus, interval=1.0, watch=watch)  # type: ignore[arg-type]
    gov._pinned = None
    gov._current = cpus
    return gov, watch


def test_the_governor_gives_way_to_a_busy_cpu_and_takes_it_back(monkeypatch: pytest.MonkeyPatch) -> None:
    gov, watch = governed(2)
    now = [100.0]
    monkeypatch.setattr(T.time, "monotonic", lambda: now[0])

    def tick(seconds: float, others: float, own: float) -> int:
        watch.advance(seconds, others, own)
        now[0] += seconds
        watch.t = now[0]
        return gov.threads()

    watch.t = now[0]
    assert gov.threads() == 2  # the first look only takes a sample
    assert tick(1.0, 0.05, 2.0) == 2  # idle machine: both CPUs
    assert tick(1.0, 0.7, 1.3) == 1  # a CPU-bound neighbour: one thread fewer
    assert tick(1.0, 1.0, 1.0) == 1  # it stays while the neighbour does
    assert tick(0.2, 0.0, 1.0) == 1  # less than the interval: no new look
    assert tick(1.0, 0.02, 1.0) == 2  # the neighbour left
    assert tick(1.0, 5.0, 0.5) == 1  # never fewer than one
    assert gov.changes == 3


def test_a_pinned_governor_never_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    gov, watch = governed(4)
    gov.pin(3)
    watch.advance(1.0, 4.0, 0.0)
    assert gov.threads() == 3
    gov.pin(None)
    assert gov.threads() == 4


def test_the_environment_pins_the_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert T.pinned_by_environment() == 3
    assert ThreadGovernor(cpus=8).threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")
    assert T.pinned_by_environment() is None


def test_cgroup_v2_quota_caps_the_cpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "kubepods" / "pod1").mkdir(parents=True)
    (tmp_path / "kubepods" / "cpu.max").write_text("max 100000\n")
    (tmp_path / "kubepods" / "pod1" / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs
    proc = tmp_path / "cgroup"
    proc.write_text("0::/kubepods/pod1\n")
    assert T._cgroup_quota(tmp_path, proc) == pytest.approx(1.5)
    monkeypatch.setattr(T, "_cgroup_quota", lambda: 1.5)
    monkeypatch.setattr(T, "_affinity_cpus", lambda: list(range(64)))
    assert T.usable_cpus() == 2  # 64 host cores, 1.5 CPUs of quota: 2 threads, not 64
    monkeypatch.setattr(T, "_affinity_cpus", lambda: [0])
    assert T.usable_cpus() == 1  # the affinity mask is smaller still


def test_cgroup_v1_quota_and_no_quota(tmp_path: Path) -> None:
    cpu = tmp_path / "cpu,cpuacct"
    cpu.mkdir()
    (cpu / "cpu.cfs_quota_us").write_text("200000\n")
    (cpu / "cpu.cfs_period_us").write_text("100000\n")
    proc = tmp_path / "cgroup"
    proc.write_text("4:cpu,cpuacct:/docker/abc\n")
    assert T._cgroup_quota(tmp_path, proc) == pytest.approx(2.0)  # the container's root holds the files
    (cpu / "cpu.cfs_quota_us").write_text("-1\n")
    assert T._cgroup_quota(tmp_path, proc) is None
    assert T._cgroup_quota(tmp_path, tmp_path / "missing") is None


def test_the_watch_reads_proc_stat_of_its_cpus_less_its_own_time(tmp_path: Path) -> None:
    (tmp_path / "self").mkdir()

    def write(cpu0: int, cpu1: int, cpu2: int, own: int) -> None:
        (tmp_path / "stat").write_text(
            f"cpu  {cpu0 + cpu1 + cpu2} 0 0 0 0 0 0 0 0 0\n"
            f"cpu0 {cpu0} 0 0 500 0 0 0 0 0 0\ncpu1 0 {cpu1} 0 500 0 0 0 0 0 0\ncpu2 {cpu2} 0 0 0 0 0 0 0 0 0\nintr 1 2\n"
        )
        # the command holds a space and a parenthesis: fields count from the last ')'
        (tmp_path / "self" / "stat").write_text(f"42 (my (odd) cmd) R 1 1 1 0 -1 0 0 0 0 0 {own} 0 0 0 20 0 3 0\n")

    watch = CpuWatch(cpus=[0, 1], proc=tmp_path)
    write(100, 100, 9999, 50)
    a = watch.sample()
    write(100 + 100, 100 + 80, 0, 50 + 100)  # 180 ticks busy on cpus 0-1 (cpu2 not ours), 100 of them ours
    b = watch.sample()
    assert a is not None and b is not None
    tick = watch._tick
    b = CpuSample(a.at + 1.0, b.busy, b.own)
    assert CpuWatch.others(a, b) == pytest.approx(80 / tick)
    assert CpuWatch(proc=tmp_path / "nothing").sample() is None


def test_the_tagger_sets_torch_threads_in_the_thread_that_tags(trained_tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from hamner.inference.tagger import Tagger

    gov = ThreadGovernor(cpus=2, watch=None)
    gov._pinned, gov._current = None, 1
    monkeypatch.setattr(T, "_GOVERNOR", gov)
    seen: list[int] = []
    tagger = Tagger.from_pretrained(trained_tiny_model)
    before = torch.get_num_threads()

    def work() -> None:
        torch.set_num_threads(2)
        tagger.tag("obama in paris")
        seen.append(torch.get_num_threads())

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert seen == [1]  # the governor's count, set in the tagging thread
    assert torch.get_num_threads() == before  # not the other threads'
    pinned = Tagger.from_pretrained(trained_tiny_model, threads=2)
    seen.clear()
    t = threading.Thread(target=lambda: (pinned.tag("obama"), seen.append(torch.get_num_threads())))
    t.start()
    t.join()
    assert seen == [2]  # a tagger's own threads= wins over the governor


def test_an_exported_model_switches_sessions_with_the_governor(trained_tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    from hamner.inference.onnx import OnnxTagger, export
    from hamner.inference.tagger import Tagger

    exported = export(trained_tiny_model, tmp_path / "fp32")
    gov = ThreadGovernor(cpus=2, watch=None)
    gov._pinned, gov._current = None, 2
    monkeypatch.setattr(T, "_GOVERNOR", gov)
    tagger = Tagger.from_pretrained(exported)
    model: Any = tagger.model
    assert isinstance(model, OnnxTagger) and model.threads == 2
    first = tagger.tag("obama in new york").to_dict()
    gov._current = 1  # another process took a CPU
    assert tagger.tag("obama in new york").to_dict() == first
    assert model.threads == 1 and sorted(model._sessions) == [1, 2]
    assert model.session.get_session_options().intra_op_num_threads == 1
    gov._current = 2
    tagger.tag("paris")
    assert model.threads == 2 and len(model._sessions) == 2  # the first session again, none made
    fixed = OnnxTagger(exported, threads=3)
    assert fixed.use_threads(1) == 3 and list(fixed._sessions) == [3]


def test_the_word_tokenizer_is_loaded_with_the_model(trained_tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hamner.inference.tagger as tagger_module

    calls: list[int] = []
    monkeypatch.setattr(tagger_module, "load_word_tokenizer", lambda: calls.append(1))
    tagger_module.Tagger.from_pretrained(trained_tiny_model)
    assert calls == [1]  # at construction, before any post
