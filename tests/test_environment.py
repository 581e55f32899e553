"""The environment manifest: fields, git commit detection, differences between runs, config hashes."""

import hashlib
import json
import shutil
import subprocess

import pytest

import safeeraser
from safeeraser import environment
from safeeraser.environment import config_hash, differences, git_commit, manifest, numeric_identity


def test_manifest_fields_and_types():
    m = manifest()
    assert set(m) == {
        "safeeraser",
        "python",
        "platform",
        "packages",
        "device",
        "threads",
        "cpu",
        "cpu_isa_pin",
        "git_commit",
    }
    assert m["safeeraser"] == safeeraser.__version__
    assert m["python"].count(".") == 2 and m["python"][0].isdigit()
    assert "-" in m["platform"]
    packages = m["packages"]
    names = (
        "torch",
        "transformers",
        "peft",
        "accelerate",
        "tokenizers",
        "safetensors",
        "numpy",
        "rouge-score",
        "Pillow",
    )
    assert set(packages) - {"vllm"} == set(names)
    assert all(isinstance(packages[n], str) and packages[n][0].isdigit() for n in names)  # all are dependencies
    assert ("vllm" in packages) == (environment.package_version("vllm") is not None)  # listed only when installed
    assert isinstance(m["device"], str) and m["device"]
    assert isinstance(m["threads"], int) and m["threads"] >= 1
    assert set(m["cpu"]) == {"model", "isa", "flags"}
    assert m["cpu_isa_pin"] is None or set(m["cpu_isa_pin"]) <= {
        "ATEN_CPU_CAPABILITY",
        "MKL_ENABLE_INSTRUCTIONS",
        "MKL_CBWR",
        "ONEDNN_MAX_CPU_ISA",
    }
    assert m["cpu"]["model"] is None or isinstance(m["cpu"]["model"], str)
    assert m["cpu"]["isa"] is None or isinstance(m["cpu"]["isa"], str)
    assert set(m["cpu"]["flags"]) <= set(environment.CPU_FLAGS)
    assert m["git_commit"] is None or len(m["git_commit"].removesuffix("+dirty")) == 40
    json.dumps(m)  # it is saved beside run results


def test_manifest_follows_the_thread_count():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert manifest()["threads"] == 1
    finally:
        torch.set_num_threads(before)


def test_expensive_parts_are_looked_up_once_per_process(monkeypatch):
    calls = []
    real = environment.git_commit
    monkeypatch.setattr(environment, "git_commit", lambda folder: calls.append(folder) or real(folder))
    environment.project_commit.cache_clear()
    environment._cpuinfo.cache_clear()
    try:
        first, second = manifest(), manifest()
        assert first == second
        assert len(calls) == 1
        assert environment._cpuinfo.cache_info().misses == 1
    finally:
        environment.project_commit.cache_clear()  # no patched value stays cached


def test_absent_package_is_none():
    assert environment.package_version("surely-not-installed-package-xyz") is None


def test_numeric_identity_keeps_what_moves_numbers():
    m = manifest()
    ident = numeric_identity(m)
    assert set(ident) == {"packages", "python", "device", "threads", "cpu"}
    assert ident["cpu"] == {"model": m["cpu"]["model"], "isa": m["cpu"]["isa"]}
    other = {**m, "git_commit": "0" * 40, "platform": "Elsewhere", "cpu": {**m["cpu"], "flags": []}}
    assert numeric_identity(other) == ident
    assert numeric_identity({**m, "threads": 99}) != ident


needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")


def _git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@needs_git
def test_git_commit_in_a_temporary_repo(tmp_path):
    repo = tmp_path / "repo"
    pkg = repo / "src" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "mod.py").write_text("x = 1\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(
        repo,
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.com",
        "-c",
        "commit.gpgsign=false",
        "commit",
        "-q",
        "-m",
        "one",
    )
    head = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()

    assert git_commit(pkg) == head
    (repo / "notes.txt").write_text("untracked files do not make a checkout dirty\n")
    assert git_commit(pkg) == head
    (pkg / "mod.py").write_text("x = 2\n")
    assert git_commit(pkg) == head + "+dirty"

    ignored = repo / "venv" / "site-packages" / "pkg"  # an installed copy inside an ignored folder
    ignored.mkdir(parents=True)
    (ignored / "mod.py").write_text("x = 1\n")
    (repo / ".gitignore").write_text("venv/\n")
    assert git_commit(ignored) is None


@needs_git
def test_git_commit_none_outside_a_checkout_and_for_an_empty_repo(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "mod.py").write_text("x = 1\n")
    assert git_commit(plain) is None
    assert git_commit(tmp_path / "missing") is None
    empty = tmp_path / "empty"
    empty.mkdir()
    _git(empty, "init", "-q")
    assert git_commit(empty) is None  # no commit yet


def test_git_commit_never_raises_without_git(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no git on PATH
    assert git_commit(tmp_path) is None


def _m(**changes):
    base = {
        "safeeraser": "0.1.0",
        "python": "3.11.7",
        "platform": "Linux-x86_64",
        "packages": {"torch": "2.13.0+cpu", "transformers": "5.1.0", "peft": "0.17.0"},
        "device": "cpu",
        "threads": 2,
        "cpu": {"model": "AMD EPYC", "isa": "AVX2", "flags": ["avx", "avx2"]},
        "git_commit": "a" * 40,
    }
    for key, value in changes.items():
        if "." in key:
            outer, inner = key.split(".")
            base[outer] = {**base[outer], inner: value}
        else:
            base[key] = value
    return base


def test_differences_identical_runs_have_none():
    assert differences({"po": _m(), "ga": _m()}) == []
    assert differences({"po": _m()}) == []
    assert differences({}) == []


def test_differences_one_line_per_field_grouping_runs():
    lines = differences(
        {
            "po": _m(),
            "vanilla": _m(),
            "ga": _m(
                **{
                    "packages.transformers": "5.2.0",
                    "threads": 4,
                    "cpu.isa": "AVX512",
                    "git_commit": "b" * 40 + "+dirty",
                }
            ),
        }
    )
    assert lines == [
        "packages.transformers: 5.1.0 (po, vanilla) vs 5.2.0 (ga)",
        "threads: 2 (po, vanilla) vs 4 (ga)",
        "cpu.isa: AVX2 (po, vanilla) vs AVX512 (ga)",
        "git_commit: aaaaaaaaaaaa (po, vanilla) vs bbbbbbbbbbbb+dirty (ga)",
    ]


def test_differences_absent_packages_missing_manifests_and_ignored_fields():
    lines = differences(
        {
            "old": None,
            "po": _m(),
            "npo": _m(
                **{"packages.vllm": "0.9.0", "device": "NVIDIA H200 (CUDA 12.8)", "platform": "Other", "cpu.flags": []}
            ),
            "older": {},
        }
    )
    assert lines == [
        "no environment recorded: old, older",
        "packages.vllm: absent (po) vs 0.9.0 (npo)",
        "device: cpu (po) vs NVIDIA H200 (CUDA 12.8) (npo)",
    ]
    assert differences({"po": _m(), "ga": _m(python="3.12.1", **{"cpu.model": "Intel Xeon"})}) == [
        "python: 3.11.7 (po) vs 3.12.1 (ga)",
        "cpu.model: AMD EPYC (po) vs Intel Xeon (ga)",
    ]


def test_differences_commit_line_comes_last_and_alone():
    lines = differences({"a": _m(), "b": _m(git_commit=None, **{"packages.peft": "0.18.0"})})
    assert lines == ["packages.peft: 0.17.0 (a) vs 0.18.0 (b)", "git_commit: aaaaaaaaaaaa (a) vs unknown (b)"]


def test_config_hash_is_stable_under_key_order():
    a = {"lora": {"r": 8, "alpha": 16}, "lr": 0.003, "methods": ["po", "ga"]}
    b = {"methods": ["po", "ga"], "lr": 0.003, "lora": {"alpha": 16, "r": 8}}
    assert config_hash(a) == config_hash(b)
    assert len(config_hash(a)) == 16 and int(config_hash(a), 16) >= 0
    assert config_hash(a) != config_hash({**a, "lr": 0.001})
    assert config_hash({"methods": ["ga", "po"]}) != config_hash({"methods": ["po", "ga"]})  # lists keep their order
    canonical = json.dumps(a, sort_keys=True, separators=(",", ":"))
    assert config_hash(a) == hashlib.sha256(canonical.encode()).hexdigest()[:16]
