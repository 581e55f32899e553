"""Hub ids load as the Hugging Face libraries load them: the cache, offline mode, gated models.

A real cache folder layout and a real HTTP server on 127.0.0.1 standing in for the hub.
"""

from __future__ import annotations

import http.server
import threading

import pytest

from safeeraser.errors import UserError
from safeeraser.models.loading import locate
from tests.small import small_demo, untrained_tiny  # noqa: F401


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, as huggingface_hub reads it at call time."""
    from huggingface_hub import constants

    folder = tmp_path / "hub"
    folder.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(folder))
    return folder


def _cached(cache, repo: str, commit: str = "0" * 40):
    """A model in the cache's own layout: refs/main names a snapshot holding config.json."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text('{"model_type": "qwen2_5_vl"}')
    return snapshot


def test_offline_a_cached_hub_id_is_found(cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snapshot = _cached(cache, "Qwen/Qwen2.5-VL-3B-Instruct")
    assert locate("Qwen/Qwen2.5-VL-3B-Instruct") == snapshot


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
def test_offline_a_missing_model_names_the_cache_and_the_variable(cache, monkeypatch, variable):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv(variable, "1")
    with pytest.raises(UserError) as err:
        locate("Qwen/Qwen2.5-VL-3B-Instruct")
    message = str(err.value)
    assert "\n" not in message
    assert str(cache) in message and "HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set" in message


class _Hub(http.server.BaseHTTPRequestHandler):
    """Answers every request as the hub answers one for a gated model without a token."""

    status = 403
    error_code = "GatedRepo"
    seen: list = []

    def do_GET(self):
        type(self).seen.append((self.path, self.headers.get("authorization")))
        self.send_response(self.status)
        self.send_header("X-Error-Code", self.error_code)
        self.send_header("X-Error-Message", "Access to model is restricted.")
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"error": "Access to model is restricted."}')

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


def _online(monkeypatch):
    """Undo the test session's HF_HUB_OFFLINE=1 (huggingface_hub also read it at import)."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def hub(monkeypatch, cache):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _online(monkeypatch)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    _Hub.seen = []
    yield _Hub
    server.shutdown()


def test_a_gated_model_says_to_accept_the_licence_and_set_the_token(hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_test_token_value")
    with pytest.raises(UserError) as err:
        locate("google/gemma-3-4b-it")
    message = str(err.value)
    assert "\n" not in message and "hf_test_token_value" not in message
    assert "accept its licence on https://huggingface.co/google/gemma-3-4b-it and set HF_TOKEN" in message
    assert hub.seen and hub.seen[0][1] == "Bearer hf_test_token_value"  # the token went to the hub


def test_an_unreachable_hub_says_how_to_work_from_the_cache(cache, monkeypatch):
    _online(monkeypatch)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: connection refused
    with pytest.raises(UserError, match=r"downloading it failed \(\w+\); set HF_HUB_OFFLINE=1 to use the cache only"):
        locate("Qwen/Qwen2.5-VL-3B-Instruct")


# --- --revision ---------------------------------------------------------------------------


def test_offline_a_revision_in_the_cache_is_found_and_a_missing_one_names_the_cache_and_the_variable(
    cache, monkeypatch
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    main = _cached(cache, "Qwen/Qwen2.5-VL-3B-Instruct")
    tagged = main.parent / ("1" * 40)
    tagged.mkdir()
    (tagged / "config.json").write_text('{"model_type": "qwen2_5_vl"}')
    (main.parent.parent / "refs" / "v2").write_text("1" * 40)
    assert locate("Qwen/Qwen2.5-VL-3B-Instruct") == main
    assert locate("Qwen/Qwen2.5-VL-3B-Instruct", "v2") == tagged
    assert locate("Qwen/Qwen2.5-VL-3B-Instruct", "1" * 40) == tagged
    with pytest.raises(UserError) as err:
        locate("Qwen/Qwen2.5-VL-3B-Instruct", "v3")
    message = str(err.value)
    assert "\n" not in message
    assert (
        "at revision 'v3'" in message
        and str(cache) in message
        and "HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set" in message
    )


def test_a_local_folder_refuses_a_revision(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llava"}')
    assert locate(str(tmp_path)) == tmp_path
    with pytest.raises(
        UserError,
        match=r"^--revision v2: .* is a local folder, and a revision selects a commit of a Hugging Face hub id only",
    ):
        locate(str(tmp_path), "v2")


def test_unlearn_and_generate_take_a_revision(cache, monkeypatch, small_demo, untrained_tiny, tmp_path):
    """The CLI passes --revision to the hub loading: a missing one is the one-line offline error,
    a cached one is the model generated with (and recorded), a local folder refuses one."""
    import json
    import shutil

    from tests.conftest import run_cli

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    main = _cached(cache, "org/tiny-llava")  # the main branch holds another model (a bare Qwen config)
    tagged = main.parent / ("1" * 40)
    shutil.copytree(untrained_tiny, tagged)
    (main.parent.parent / "refs" / "v1").write_text("1" * 40)

    code, out, err = run_cli(
        "unlearn",
        "--model",
        "org/tiny-llava",
        "--revision",
        "v9",
        "--data",
        small_demo,
        "--method",
        "po",
        "--out",
        tmp_path / "run",
        "--max-steps",
        "1",
    )
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert (
        "org/tiny-llava at revision 'v9' is not in the Hugging Face cache" in err
        and str(cache) in err
        and "HF_HUB_OFFLINE" in err
    )

    general = ["--data", small_demo, "--split", "general", "--protocol", "fast", "--max-new-tokens", "2"]
    code, out, err = run_cli(
        "generate", "--model", untrained_tiny, "--revision", "v1", *general, "--out", tmp_path / "local.json"
    )
    assert code != 0 and len(err.strip().splitlines()) == 1 and "is a local folder" in err
    assert not (tmp_path / "local.json").exists()

    code, out, err = run_cli(
        "generate", "--model", "org/tiny-llava", "--revision", "v1", *general, "--out", tmp_path / "pred.json"
    )
    assert code == 0, err
    meta = json.loads((tmp_path / "pred.meta.json").read_text())
    assert meta["model"] == "org/tiny-llava" and meta["revision"] == "v1"
