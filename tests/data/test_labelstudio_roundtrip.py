"""The Label Studio round trip against a real Label Studio (label-studio 1.23.2, its own venv).

hamner tag's output of a tiny model -> ``hamner labelstudio predictions`` -> a project made through
the API -> an annotation that corrects a prediction -> the JSON export -> ``read_export`` -> a model
trained on the export. Label Studio runs on 127.0.0.1 on a free port with a temporary data folder,
and is authorised with its current token scheme (a personal access token, i.e. a JWT refresh
token, exchanged for an access token), not the legacy tokens 1.23 refuses by default.

Needs the venv of ``scripts/install_label_studio.sh`` (./.venv-labelstudio, or
``HAMNER_LABELSTUDIO_VENV``); skips without it unless ``HAMNER_REQUIRE_LABELSTUDIO=1`` (CI),
where it fails instead.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, make_tiny_encoder

pytestmark = pytest.mark.slow

LS_VENV = Path(os.environ.get("HAMNER_LABELSTUDIO_VENV", REPO / ".venv-labelstudio"))
LS_BIN = LS_VENV / "bin" / "label-studio"
START_TIMEOUT_S = 300  # a first start migrates a new database: about 35 s on a 2-core machine
EMAIL, PASSWORD = "hamner@example.com", "hamner-test-password"

POSTS = [
    {"id": "p1", "text": "police in London city"},
    {"id": "p2", "text": "\U0001f600 police in London city"},  # an emoji before the entity: 1 code point, 2 UTF-16 units
    {"id": "p3", "text": "Apple and Google in Paris"},
    {"id": "p4", "text": "the NBA game today !"},
]


class LabelStudio:
    """A running Label Studio and an authorised HTTP session."""

    def __init__(self, base: str) -> None:
        import requests

        self.base = base
        self.http = requests.Session()

    def login_with_access_token(self) -> None:
        """Log in with the password once, to create a personal access token (POST /api/token/, which
        needs a session); from then on every call carries a short-lived access token from it."""
        import requests

        web = requests.Session()
        web.get(f"{self.base}/user/login/").raise_for_status()
        form = {"email": EMAIL, "password": PASSWORD, "csrfmiddlewaretoken": str(web.cookies.get("csrftoken"))}
        r = web.post(f"{self.base}/user/login/", data=form, allow_redirects=False)
        assert r.status_code == 302, f"login failed: {r.status_code} {r.text[:300]}"
        r = web.post(f"{self.base}/api/token/", headers={"X-CSRFToken": str(web.cookies.get("csrftoken")), "Referer": f"{self.base}/"})
        assert r.status_code == 201, f"creating a personal access token failed: {r.status_code} {r.text[:300]}"
        personal = r.json()["token"]
        r = requests.post(f"{self.base}/api/token/refresh/", json={"refresh": personal})
        assert r.status_code == 200, f"exchanging the personal access token failed: {r.status_code} {r.text[:300]}"
        self.http.headers["Authorization"] = f"Bearer {r.json()['access']}"

    def call(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        r = self.http.request(method, f"{self.base}{path}", **kwargs)
        assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text[:500]}"
        return r.json()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudio]:
    if not LS_BIN.exists():
        reason = f"no Label Studio venv at {LS_VENV} (bash scripts/install_label_studio.sh makes it; HAMNER_LABELSTUDIO_VENV points elsewhere)"
        if os.environ.get("HAMNER_REQUIRE_LABELSTUDIO") == "1":
            pytest.fail(f"HAMNER_REQUIRE_LABELSTUDIO=1 but {reason}")
        pytest.skip(reason)
    pytest.importorskip("requests")
    home = tmp_path_factory.mktemp("label-studio")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO", "DJANGO"))}
    env.update(HOME=str(home), LABEL_STUDIO_BASE_DATA_DIR=str(home / "data"), OMP_NUM_THREADS="1")
    cmd = [
        str(LS_BIN), "start", "--no-browser", "--host", "127.0.0.1", "-p", str(port), "--data-dir", str(home / "data"),
        "--username", EMAIL, "--password", PASSWORD,
    ]  # fmt: skip
    log_path = home / "label-studio.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=home, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        import requests

        started = time.monotonic()
        while True:
            if proc.poll() is not None:
                pytest.fail(f"Label Studio exited with {proc.returncode}; its log:\n{log_path.read_text(errors='replace')[-3000:]}")
            try:
                if requests.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() - started > START_TIMEOUT_S:
                pytest.fail(f"Label Studio did not answer /health in {START_TIMEOUT_S} s; its log:\n{log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
        logging.getLogger(__name__).info("Label Studio answered /health after %.1f s", time.monotonic() - started)
        studio = LabelStudio(base)
        studio.login_with_access_token()
        yield studio
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the group this fixture started (runserver and its children)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_label_studio_round_trip(label_studio: LabelStudio, trained_tiny_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from hamner.cli import main
    from hamner.data.labelstudio import labeling_config, read_export
    from hamner.models.tagger import CONFIG_FILE

    # 1. hamner tag, then its output as Label Studio tasks with predictions
    posts = tmp_path / "posts.jsonl"
    posts.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in POSTS), encoding="utf-8")
    tagged, tasks_file = tmp_path / "tagged.jsonl", tmp_path / "tasks.json"
    assert main(["tag", "--model", str(trained_tiny_model), str(posts), "-o", str(tagged)]) == 0
    assert main(["labelstudio", "predictions", str(tagged), "-o", str(tasks_file), "--model-version", "tiny"]) == 0
    tasks = json.loads(tasks_file.read_text(encoding="utf-8"))
    london = tasks[0]["predictions"][0]["result"]
    assert [(r["value"]["start"], r["value"]["end"], r["value"]["labels"]) for r in london] == [(10, 16, ["LOC"])]

    # 2. a project for the checkpoint's types, and the import
    labels = json.loads((trained_tiny_model / CONFIG_FILE).read_text(encoding="utf-8"))["tagger"]["labels"]
    types = list(dict.fromkeys(label[2:] for label in labels if label != "O"))
    project = label_studio.call("POST", "/api/projects/", expect=201, json={"title": "hamner round trip", "label_config": labeling_config(types)})
    pid = project["id"]
    got = label_studio.call("POST", f"/api/projects/{pid}/import", expect=201, json=tasks)
    assert (got["task_count"], got["prediction_count"]) == (len(POSTS), len(POSTS))
    stored = label_studio.call("GET", "/api/tasks/", params={"project": pid, "fields": "all"})["tasks"]
    by_post = {t["data"]["id"]: label_studio.call("GET", f"/api/tasks/{t['id']}") for t in stored}
    for task in tasks:  # Label Studio keeps the offsets it is given (code points: what its editor shows)
        ls_task = by_post[task["data"]["id"]]
        assert ls_task["data"]["text"] == task["data"]["text"]
        assert ls_task["predictions"][0]["result"] == task["predictions"][0]["result"]
        assert ls_task["predictions"][0]["model_version"] == "tiny"

    # 3. annotations: p1 and p3 accept the predictions, p2 (emoji first) is corrected, p4 is left undone
    for post_id in ("p1", "p3"):
        result = by_post[post_id]["predictions"][0]["result"]
        label_studio.call("POST", f"/api/tasks/{by_post[post_id]['id']}/annotations/", expect=201, json={"result": result, "was_cancelled": False})
    emoji_text = POSTS[1]["text"]
    assert emoji_text[2:8] == "police" and emoji_text[12:18] == "London"  # code points; UTF-16 would be 3:9 and 13:19
    correction = [
        {"id": "c1", "from_name": "label", "to_name": "text", "type": "labels", "origin": "manual",
         "value": {"start": 2, "end": 8, "text": "police", "labels": ["ORG"]}},
        {"id": "c2", "from_name": "label", "to_name": "text", "type": "labels", "origin": "manual",
         "value": {"start": 12, "end": 18, "text": "London", "labels": ["LOC"]}},
    ]  # fmt: skip
    label_studio.call("POST", f"/api/tasks/{by_post['p2']['id']}/annotations/", expect=201, json={"result": correction, "was_cancelled": False})

    # 4. the export (all tasks, so the undone one is in it too) and read_export
    r = label_studio.http.get(f"{label_studio.base}/api/projects/{pid}/export", params={"exportType": "JSON", "download_all_tasks": "true"})
    assert r.status_code == 200, r.text[:500]
    export = tmp_path / "export.json"
    export.write_bytes(r.content)
    with caplog.at_level(logging.WARNING, logger="hamner.data.labelstudio"):
        records = read_export(export)
    assert f"1 tasks left out (no annotation): task ids [{by_post['p4']['id']}]" in caplog.text
    got_records = {r["id"]: r for r in records}
    assert sorted(got_records) == ["p1", "p2", "p3"]
    assert got_records["p2"]["entities"] == [{"start": 2, "end": 8, "type": "ORG"}, {"start": 12, "end": 18, "type": "LOC"}]
    assert got_records["p2"]["text"] == emoji_text
    assert got_records["p1"]["entities"] == [{"start": 10, "end": 16, "type": "LOC"}]
    assert got_records["p2"]["_where"] == f"{export}: task {by_post['p2']['id']}"

    # 5. the export is a corpus: checked, then trained on as it is (format detected from its content)
    assert main(["data", "check", "--train", str(export), "--dev", str(export), "--test", str(export)]) == 0
    from hamner.training.config import load_config
    from hamner.training.trainer import run_training

    encoder = make_tiny_encoder(tmp_path / "encoder")
    cfg = load_config(None, [
        f"model.encoder={encoder}", "data.dataset=studio", f"data.train={export}", f"data.dev={export}", f"data.test={export}",
        f"train.output_dir={tmp_path / 'runs'}", "train.epochs=2", "train.batch_size=4", "train.num_threads=1", "train.progress=false",
    ])  # fmt: skip
    final = run_training(cfg)
    assert final is not None and 0.0 <= final["test_f1"] <= 1.0
    trained = json.loads((cfg.run_dir() / "best" / CONFIG_FILE).read_text(encoding="utf-8"))["tagger"]["labels"]
    assert trained == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]  # the types of the corrected export, not the benchmarks'
    assert (cfg.run_dir() / "best").is_dir()
