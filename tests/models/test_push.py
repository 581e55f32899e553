"""`safeeraser push` against a loopback stand-in for the Hub's endpoints (create repo, preupload,
commit): the requests that arrive are the push. The real Hub is never contacted."""

import base64
import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from safeeraser.errors import UserError
from safeeraser.models.push import push_plan
from safeeraser.unlearn.config import resolve_config
from safeeraser.unlearn.trainer import unlearn
from tests.conftest import run_cli
from tests.small import small_demo, untrained_tiny  # noqa: F401


class FakeHub(BaseHTTPRequestHandler):
    """Just enough of the Hub's API for ``create_repo`` and ``upload_folder`` of small files."""

    received: list  # (method, path, body), set per server

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.received.append(("POST", self.path, body))
        if self.path == "/api/repos/create":
            name = json.loads(body)
            self._json(
                {
                    "url": f"http://{self.headers['Host']}/{name.get('organization')}/{name['name']}",
                    "name": name["name"],
                }
            )
        elif self.path == "/api/validate-yaml":  # the card's metadata, checked before the commit
            self._json({"errors": [], "warnings": []})
        elif "/preupload/" in self.path:  # every file sent inline, in the commit itself
            self._json(
                {
                    "files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                        for f in json.loads(body)["files"]
                    ]
                }
            )
        elif "/commit/" in self.path:
            repo = self.path.split("/api/models/")[1].split("/commit/")[0]
            self._json(
                {
                    "commitUrl": f"http://{self.headers['Host']}/{repo}/commit/{'1' * 40}",
                    "commitOid": "1" * 40,
                    "pullRequestUrl": None,
                }
            )
        else:
            self._json({"error": "not here"}, 404)

    def do_GET(self):
        self.received.append(("GET", self.path, b""))
        self._json({"error": "not here"}, 404)

    def _json(self, data, code=200):
        raw = json.dumps(data).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args):
        pass


@pytest.fixture
def hub():
    received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Hub", (FakeHub,), {"received": received}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()


@pytest.fixture(scope="module")
def run(untrained_tiny, small_demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("push") / "ga"
    unlearn(
        str(untrained_tiny),
        small_demo,
        "ga",
        out,
        resolve_config(preset="demo", overrides=[{"max_steps": 1, "eval_every": 0}]),
        progress=False,
    )
    return out


def push(endpoint, *args, token="hf_test"):
    """The CLI in a child process: huggingface_hub reads HF_ENDPOINT when it is imported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env |= {
        "HF_ENDPOINT": endpoint,
        "HF_HUB_OFFLINE": "0",
        "HF_HOME": os.environ.get("XDG_CACHE_HOME", "/tmp") + "/hf",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    if token:
        env["HF_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "safeeraser", "push", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_push_creates_the_repo_and_commits_the_adapter_with_its_card(run, hub):
    endpoint, received = hub
    done = push(endpoint, "--run", run, "--repo-id", "lab/ga-unlearned", "--private")
    assert done.returncode == 0, done.stderr
    assert (
        done.stderr.strip().splitlines()[-1]
        == f"pushed {run / 'adapter'} to lab/ga-unlearned: {endpoint}/lab/ga-unlearned/commit/{'1' * 40}"
    )
    create = [json.loads(body) for method, path, body in received if path == "/api/repos/create"]
    assert len(create) == 1 and create[0]["name"] == "ga-unlearned" and create[0]["organization"] == "lab", create
    assert create[0]["visibility"] == "private"
    commit = next(body for method, path, body in received if path.startswith("/api/models/lab/ga-unlearned/commit/"))
    sent = {}
    for line in commit.decode().splitlines():
        item = json.loads(line)
        if item["key"] == "file":
            sent[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
    _, files = push_plan(run)
    assert sorted(sent) == files == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    assert sent["adapter_model.safetensors"] == (run / "adapter" / "adapter_model.safetensors").read_bytes()
    assert b"library_name: peft" in sent["README.md"]
    # without --private, the visibility is left to the account's default; --merged sends merged/
    (run / "merged").mkdir()
    (run / "merged" / "config.json").write_text("{}")
    try:
        done = push(endpoint, "--run", run, "--repo-id", "lab/ga-merged", "--merged")
    finally:
        shutil.rmtree(run / "merged")  # the run is shared with the tests below
    assert done.returncode == 0, done.stderr
    create = [json.loads(body) for method, path, body in received if path == "/api/repos/create"]
    assert create[-1]["name"] == "ga-merged" and "visibility" not in create[-1]
    commit = next(body for method, path, body in received if path.startswith("/api/models/lab/ga-merged/commit/"))
    assert [
        json.loads(line)["value"]["path"] for line in commit.decode().splitlines() if json.loads(line)["key"] == "file"
    ] == ["config.json"]


def test_push_errors_are_one_line(run, hub, tmp_path):
    endpoint, received = hub
    cases = [
        (["--run", tmp_path / "none", "--repo-id", "lab/x"], "no such run folder"),
        (["--run", run / "adapter", "--repo-id", "lab/x"], "not a finished run (no run.json)"),
        (["--run", run, "--repo-id", "lab/x", "--merged"], "merge it first: safeeraser merge --run RUN_DIR"),
        (["--run", run, "--repo-id", "lab/x/y"], "not a Hugging Face repository id"),
    ]
    for args, message in cases:
        code, _, err = run_cli("push", *args)
        assert code != 0 and len(err.strip().splitlines()) == 1 and message in err, (args, err)
    done = push(endpoint, "--run", run, "--repo-id", "lab/x", token=None)
    assert done.returncode != 0 and done.stderr.strip().splitlines() == [
        "error: no Hugging Face token: set HF_TOKEN (a token with write access) or run `hf auth login`"
    ]
    code, _, err = run_cli("push", "--run", run, "--repo-id", "lab/x")  # the tests' HF_HUB_OFFLINE=1
    assert code != 0 and "HF_HUB_OFFLINE is set" in err
    assert received == []  # nothing was sent


def test_push_plan_refuses_a_run_without_adapter(run, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "run.json").write_text(json.dumps({"method": "vanilla", "model": "m"}))
    with pytest.raises(UserError, match="adapter: not found; it has no adapter"):
        push_plan(bare)
