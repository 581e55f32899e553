"""Regenerate the demo numbers of the README and docs/demo.md from real runs, or check that a fresh run still gives them.

    python scripts/regenerate_readme.py            # seeds 0-4 (about 45 min on 2 cores), rewrite the README and docs/demo.md
    python scripts/regenerate_readme.py --check    # seed 0 only (about 9 min): fail if the README's table differs
    python scripts/regenerate_readme.py --from-runs DIR   # rewrite the README from finished runs in DIR
    python scripts/regenerate_readme.py --seeds none --no-zoo   # only the other families' demos (Qwen2.5-VL, seed 0)
    python scripts/regenerate_readme.py --seeds none --families none --no-robustness   # only the other methods (seed 0)
    python scripts/regenerate_readme.py --seeds none --families none --no-zoo   # only the robustness audit of seed 0's runs

Every number of docs/demo.md ("What the demo shows") and the README's seed-0 table is written here, from
``safeeraser demo --out demo-out --seed S`` run at the locked versions (constraints.txt):
the seed-0 table, the five-seed table (mean ± std and min-max of each metric) and the per-seed
Prompt-Decouple reduction of SARR. The seed-0 ``results.json`` is kept in
``docs/demo/results.json`` with the environment it came from (``docs/demo/environment.json``).
The "Across architectures" tables come from ``safeeraser demo --family F --out demo-out-F --seed 0``
for each family in ``FAMILIES`` (``--families``), run in the environment recorded for the LLaVA
table. A measured run's time is kept in its folder (``timing.json``), so ``--from-runs`` reports it.

``--check`` reruns only the LLaVA demo (the other families' demos are too slow for CI): it runs
the README's demo command again and compares its ``results.json`` byte for
byte with the kept one. Floating-point results may differ between CPU models and instruction
sets, so a difference fails only when the environment that decides them (package versions,
Python, threads, CPU model and instruction set) is the recorded one; otherwise it is a warning
with the command that regenerates the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DEMO_PAGE = ROOT / "docs" / "demo.md"  # the seeds, families and other-methods tables, and the seed-0 table again
KEPT = ROOT / "docs" / "demo"
OUT = "demo-out"  # the README's command writes here, relative to the repository root
SEEDS = (0, 1, 2, 3, 4)
TABLE = ("<!-- demo-table:start -->", "<!-- demo-table:end -->")
SEEDS_BLOCK = ("<!-- demo-seeds:start -->", "<!-- demo-seeds:end -->")
FAMILIES = ("qwen2_5_vl",)  # the other families whose seed-0 demo docs/demo.md shows
ZOO_OUT = f"{OUT}-zoo"  # the methods beyond the demo's ten (simnpo, ..., mmunlearner, each with +pd; po+sineproject, po+pd+sineproject), seed 0
ZOO_BLOCK = ("<!-- demo-zoo:start -->", "<!-- demo-zoo:end -->")
SUCCESSORS_OUT = f"{OUT}-successors"  # PO+PD beside the methods that compete with it (SineProject, MMUnlearner), seed 0
SUCCESSORS = ("po+pd", "po+sineproject", "po+pd+sineproject", "mmunlearner", "mmunlearner+pd")
SUCCESSORS_BLOCK = ("<!-- demo-successors:start -->", "<!-- demo-successors:end -->")
AUDIT_OUT = f"{OUT}-audit"  # `safeeraser audit` of seed 0's runs, one folder per method
AUDITED = ("vanilla", "po", "po+pd", "gd", "gd+pd", "npo", "npo+pd")
ROBUSTNESS_BLOCK = ("<!-- demo-robustness:start -->", "<!-- demo-robustness:end -->")
TIMING = "timing.json"  # a measured run's Timing, kept in its folder
SHOWN = (
    ("asr_efficacy", "ASR eff. ↓"),
    ("rr_efficacy", "RR eff. ↑"),
    ("asr_generality", "ASR gen. ↓"),
    ("sarr", "SARR ↓"),
    ("rouge_l", "ROUGE-L ↑"),
)
REGENERATE = "python scripts/regenerate_readme.py"


@dataclass
class Timing:
    """Wall seconds of one demo run, its CPU seconds, and the machine's load when it ended.

    Wall time depends on what else runs: the CPU seconds and the load say whether it ran alone.
    """

    wall: float
    cpu: float
    load: float
    reused: bool = False  # the folder held a finished run: nothing was measured

    def describe(self) -> str:
        if self.reused:
            return "a finished run reused (not timed)"
        return f"{self.wall / 60:.1f} min wall, {self.cpu / 60:.1f} CPU-min, load average {self.load:.1f} at the end"


def run_demo(out: str, seed: int, family: str = "llava") -> tuple[list[dict], Timing]:
    """The README's demo command at one seed (a finished run in ``out`` is reused); its rows and timing."""
    reused = (ROOT / out / "results.json").is_file()
    began, cpu_began = time.perf_counter(), _children_cpu()
    env = {**os.environ, "TQDM_DISABLE": "1"}
    command = [sys.executable, "-m", "safeeraser", "demo", "--out", out, "--seed", str(seed)]
    subprocess.run(command + (["--family", family] if family != "llava" else []), cwd=ROOT, env=env, check=True)
    rows = json.loads((ROOT / out / "results.json").read_text(encoding="utf-8"))
    timing = Timing(time.perf_counter() - began, _children_cpu() - cpu_began, os.getloadavg()[0], reused)
    if not reused:
        (ROOT / out / TIMING).write_text(json.dumps(asdict(timing)) + "\n", encoding="utf-8")
    return rows, timing


def kept_timing(folder: Path) -> Timing:
    """The time measured when the finished run in ``folder`` was made, where it was kept."""
    if (folder / TIMING).is_file():
        return Timing(**json.loads((folder / TIMING).read_text(encoding="utf-8")))
    return Timing(0, 0, 0, reused=True)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def pct(value) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def seed_table(rows: list[dict]) -> str:
    """The seed-0 tables as results.md prints them: the metrics, then SARR of X against X+PD."""
    from safeeraser.report.table import to_markdown

    lines = to_markdown(rows).splitlines()

    def table_from(prefix: str) -> list[str]:
        start = next((i for i, line in enumerate(lines) if line.startswith(prefix)), None)
        if start is None:
            return []
        end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
        return lines[start:end]

    pd = table_from("| X |")
    return "\n".join(table_from("| Method") + ([""] + pd if pd else []))


def across_seeds(by_seed: dict[int, list[dict]]) -> str:
    """Per method: mean ± std (min–max) over seeds of each shown metric; then the PD cut of SARR per seed."""
    methods = [r["method"] for r in by_seed[min(by_seed)]]
    header = "| Method | " + " | ".join(name for _, name in SHOWN) + " |"
    lines = [header, "|---|" + "---:|" * len(SHOWN)]
    for method in methods:
        cells = []
        for key, _ in SHOWN:
            values = [r[key] for rows in by_seed.values() for r in rows if r["method"] == method and r[key] is not None]
            if not values:
                cells.append("—")
                continue
            mean = 100 * statistics.fmean(values)
            std = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{mean:.1f} ± {std:.1f} ({100 * min(values):.1f}–{100 * max(values):.1f})")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    seeds = sorted(by_seed)
    lines += ["", "| X | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|---|" + "---:|" * len(seeds)]
    bases = [m for m in methods if not m.endswith("+pd") and f"{m}+pd" in methods]
    for base in bases:
        cells = []
        for s in seeds:
            row = {r["method"]: r for r in by_seed[s]}
            x, pd = row[base]["sarr"], row[f"{base}+pd"]["sarr"]
            cells.append(f"{pct(x)} → {pct(pd)} ({'—' if not x else f'{100 * (x - pd) / x:.0f}%'})")
        lines.append(f"| {base} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def rewrite(page: Path, markers: tuple[str, str], body: str) -> None:
    page.write_text(replace_block(page.read_text(encoding="utf-8"), markers, body, page.name), encoding="utf-8")


def replace_block(text: str, markers: tuple[str, str], body: str, name: str = "README.md") -> str:
    start, end = markers
    if start not in text or end not in text:
        raise SystemExit(f"{name}: markers {start} / {end} not found")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}\n{end}{tail}"


def environment_note(env: dict, timings: dict[int, Timing]) -> str:
    cpu = env.get("cpu") or {}
    packages = ", ".join(f"{k} {v}" for k, v in (env.get("packages") or {}).items() if v)
    return (
        f"Measured on {cpu.get('model')} ({cpu.get('isa')}), {env.get('threads')} threads, Python {env.get('python')}, "
        f"{packages}. Time per seed: "
        + "; ".join(f"{seed}: {t.describe()}" for seed, t in sorted(timings.items()))
        + f". Regenerate with `{REGENERATE}`."
    )


def seed_folder(seed: int) -> str:
    return OUT if seed == 0 else f"{OUT}-seed{seed}"


def family_folder(family: str) -> str:
    return f"{OUT}-{family}"


def family_markers(family: str) -> tuple[str, str]:
    return (f"<!-- demo-family:{family}:start -->", f"<!-- demo-family:{family}:end -->")


def regenerate_families(families: tuple[str, ...], runs_from: Path | None = None) -> None:
    """Run each family's seed-0 demo (or read it from ``runs_from``) and write its README table.

    Its numbers stand next to the LLaVA table's, so they must come from the environment that
    table was recorded in (docs/demo/environment.json)."""
    from safeeraser.environment import manifest, numeric_identity

    recorded = json.loads((KEPT / "environment.json").read_text(encoding="utf-8"))
    env = manifest()
    if numeric_identity(env) != recorded:
        raise SystemExit(
            f"this environment ({json.dumps(numeric_identity(env))}) is not the one the LLaVA table was recorded in ({json.dumps(recorded)}): run the families' demos there"
        )
    blocks = {}
    for family in families:
        folder = (runs_from or ROOT) / family_folder(family)
        if runs_from is None:
            rows, timing = run_demo(family_folder(family), 0, family)
        else:
            if not (folder / "results.json").is_file():
                raise SystemExit(f"--from-runs: {folder / 'results.json'} is missing")
            rows, timing = json.loads((folder / "results.json").read_text(encoding="utf-8")), kept_timing(folder)
        ran = (
            json.loads((folder / "demo.json").read_text(encoding="utf-8")).get("family")
            if (folder / "demo.json").is_file()
            else None
        )
        if ran != family:
            raise SystemExit(f"{folder}: not a demo of {family} (its demo.json names {ran})")
        if rows[0].get("environment") != recorded:
            raise SystemExit(
                f"{folder / 'results.json'} was made in another environment ({rows[0].get('environment')}): rerun it here"
            )
        print(f"{family}: {timing.describe()}", file=sys.stderr)
        note = (
            f"`safeeraser demo --family {family} --out {family_folder(family)}` (seed 0), in the environment of the LLaVA table above. "
            f"Time: {timing.describe()}. Regenerate with `{REGENERATE} --seeds none --no-zoo --families {family}`."
        )
        blocks[family] = seed_table(rows) + "\n\n" + note
    text = DEMO_PAGE.read_text(encoding="utf-8")  # read after the runs: the page may change while they run
    for family, body in blocks.items():
        text = replace_block(text, family_markers(family), body, DEMO_PAGE.name)
    DEMO_PAGE.write_text(text, encoding="utf-8")
    print(f"wrote docs/demo.md ({', '.join(families)})", file=sys.stderr)


def zoo_methods() -> list[str]:
    """Every registered method the demo's default list leaves out (each with and without PD)."""
    from safeeraser.unlearn.methods import ALL_METHOD_NAMES, METHOD_NAMES

    return [m for m in ALL_METHOD_NAMES if m not in METHOD_NAMES]


def seed0_demo(out: str, methods: list[str], what: str, runs_from: Path | None = None) -> tuple[list[dict], Timing]:
    """``safeeraser demo --out OUT --seed 0 --methods METHODS`` (or its finished run under
    ``runs_from``): its results.json rows and timing.

    A finished seed-0 demo in demo-out lends its data, vanilla model and vanilla answers: the demo
    makes them from the seed alone, so they are the files the run would build again. Like the
    families' tables, these must come from the environment the LLaVA table was recorded in.
    """
    import shutil

    from safeeraser.environment import manifest, numeric_identity

    recorded = json.loads((KEPT / "environment.json").read_text(encoding="utf-8"))
    if numeric_identity(manifest()) != recorded:
        raise SystemExit(
            f"this environment ({json.dumps(numeric_identity(manifest()))}) is not the one the LLaVA table was recorded in ({json.dumps(recorded)}): run {what} there"
        )
    folder = (runs_from or ROOT) / out
    if runs_from is None:
        seed0 = ROOT / OUT
        if (seed0 / "results.json").is_file() and not folder.exists():
            for part in ("data", "model", "runs/vanilla"):
                shutil.copytree(seed0 / part, folder / part)
        reused = (folder / "results.json").is_file()
        began, cpu_began = time.perf_counter(), _children_cpu()
        command = [
            sys.executable,
            "-m",
            "safeeraser",
            "demo",
            "--out",
            out,
            "--seed",
            "0",
            "--methods",
            ",".join(methods),
        ]
        subprocess.run(command, cwd=ROOT, env={**os.environ, "TQDM_DISABLE": "1"}, check=True)
        timing = Timing(time.perf_counter() - began, _children_cpu() - cpu_began, os.getloadavg()[0], reused)
        if not reused:
            (folder / TIMING).write_text(json.dumps(asdict(timing)) + "\n", encoding="utf-8")
    else:
        timing = kept_timing(folder)
    if not (folder / "results.json").is_file():
        raise SystemExit(f"{folder / 'results.json'} is missing")
    rows = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    if rows[0].get("environment") != recorded:
        raise SystemExit(
            f"{folder / 'results.json'} was made in another environment ({rows[0].get('environment')}): rerun it here"
        )
    print(f"{what}: {timing.describe()}", file=sys.stderr)
    return rows, timing


def regenerate_successors(runs_from: Path | None = None) -> None:
    """PO+PD beside its successors, seed 0, into docs/demo.md (as the other methods' table is made)."""
    rows, timing = seed0_demo(SUCCESSORS_OUT, list(SUCCESSORS), "the successors", runs_from)
    note = (
        f"`safeeraser demo --out {SUCCESSORS_OUT} --seed 0 --methods {','.join(SUCCESSORS)}`, in the environment of the LLaVA table above. "
        f"Time: {timing.describe()}. Regenerate with `{REGENERATE} --seeds none --families none --no-zoo --no-robustness --successors`."
    )
    rewrite(DEMO_PAGE, SUCCESSORS_BLOCK, seed_table(rows) + "\n\n" + note)
    print("wrote docs/demo.md (successors)", file=sys.stderr)


def regenerate_zoo(runs_from: Path | None = None) -> None:
    """The other methods' seed-0 demo, into docs/demo.md."""
    rows, timing = seed0_demo(ZOO_OUT, zoo_methods(), "the other methods", runs_from)
    note = (
        f"`safeeraser demo --out {ZOO_OUT} --seed 0 --methods {','.join(zoo_methods())}`, in the environment of the LLaVA table above. "
        f"Time: {timing.describe()}. Regenerate with `{REGENERATE} --seeds none --families none --no-robustness --no-successors`."
    )
    rewrite(DEMO_PAGE, ZOO_BLOCK, seed_table(rows) + "\n\n" + note)
    print("wrote docs/demo.md (other methods)", file=sys.stderr)


def audit_folder(method: str) -> Path:
    return Path(AUDIT_OUT) / method


def vanilla_protocol(demo: Path) -> list[str]:
    """The generation settings of the vanilla row's answers, as `audit` flags."""
    meta = json.loads((demo / "runs" / "vanilla" / "predictions_val.meta.json").read_text(encoding="utf-8"))[
        "generation"
    ]
    return [
        "--protocol",
        meta["protocol"],
        "--num-samples",
        str(meta["num_samples"]),
        "--max-new-tokens",
        str(meta["max_new_tokens"]),
        "--batch-size",
        str(meta["batch_size"]),
    ]


def run_audits(runs_from: Path | None, methods: tuple[str, ...] = AUDITED) -> dict[str, dict]:
    """``safeeraser audit`` of each of seed 0's runs in ``AUDITED`` (a finished attack is kept by
    the audit itself), or the finished audits under ``runs_from``; method -> audit.json."""
    root = runs_from or ROOT
    demo = root / OUT
    if not (demo / "results.json").is_file():
        raise SystemExit(
            f"{demo / 'results.json'} is missing: the robustness table audits seed 0's runs (run `{REGENERATE} --seeds 0` first)"
        )
    records = {}
    for method in methods:
        folder = root / audit_folder(method)
        if runs_from is None:
            # vanilla has no adapter to read the protocol from: its answers' own settings are named
            adapter = vanilla_protocol(demo) if method == "vanilla" else ["--adapter", str(Path(OUT) / "runs" / method)]
            command = [
                sys.executable,
                "-m",
                "safeeraser",
                "audit",
                "--model",
                f"{OUT}/model",
                *adapter,
                "--data",
                f"{OUT}/data",
                "--out",
                str(audit_folder(method)),
            ]
            subprocess.run(command, cwd=ROOT, env={**os.environ, "TQDM_DISABLE": "1"}, check=True)
        found = folder / "audit.json"
        if not found.is_file():
            raise SystemExit(f"{found} is missing")
        records[method] = json.loads(found.read_text(encoding="utf-8"))
    return records


def _attack_cell(record: dict, attack: str, key: str) -> str:
    if attack == "none":
        return pct(record["baseline"]["metrics"].get(key))
    result = record["results"].get(attack) or {}
    if result.get("status") != "done":
        return "not run"
    return pct(result["metrics"].get(key))


def robustness_tables(records: dict[str, dict]) -> str:
    """ASR and SARR per attack, the relearning curve and the membership-inference AUCs, per method."""
    from safeeraser.audit.run import INPUT_ATTACKS, QUANT_ATTACKS

    attacks = ("none", *QUANT_ATTACKS, *INPUT_ATTACKS)
    label = {m: ("vanilla" if m == "vanilla" else m.upper().replace("+PD", "+PD")) for m in records}
    out = []
    for key, title in (
        ("asr_efficacy", "ASR on the forget split (seen images) ↓"),
        ("asr_generality", "ASR on the test split (unseen images) ↓"),
        ("sarr", "SARR ↓"),
    ):
        out += [
            f"**{title}**, percent, per attack:",
            "",
            "| method | " + " | ".join(attacks) + " |",
            "|---|" + "---:|" * len(attacks),
        ]
        out += [
            f"| {label[m]} | " + " | ".join(_attack_cell(r, a, key) for a in attacks) + " |" for m, r in records.items()
        ]
        out.append("")
    relearn = {m: r["results"].get("relearn") or {} for m, r in records.items()}
    done = {m: x for m, x in relearn.items() if x.get("status") == "done"}
    if done:
        steps = [p["steps"] for p in next(iter(done.values()))["curve"]]
        first = next(iter(done.values()))
        out += [
            f"**Relearning**: ASR (percent) on the {first['measured_pairs']} harmful training pairs it left out, after plain fine-tuning on the "
            f"{first['trained_pairs']} pairs of one category for 0, {', '.join(map(str, steps[1:]))} steps; vanilla's ASR on the same pairs is the ceiling.",
            "",
            "| method | " + " | ".join(f"{s} steps" for s in steps) + " | vanilla |",
            "|---|" + "---:|" * (len(steps) + 1),
        ]
        out += [
            f"| {label[m]} | "
            + " | ".join(pct(p["asr_efficacy"]) for p in x["curve"])
            + f" | {pct(x['vanilla_asr'])} |"
            for m, x in done.items()
        ]
        out.append("")
    mia = {m: r["results"].get("mia") or {} for m, r in records.items()}
    done = {m: x for m, x in mia.items() if x.get("status") == "done"}
    if done:
        first = next(iter(done.values()))
        names = list(first["auc"])
        out += [
            f"**Membership inference**: ROC AUC of each score, the forget split's harmful answers ({first['members']}, members) against the test split's "
            f"({first['non_members']}, non-members); 0.5 is chance.",
            "",
            "| method | " + " | ".join(names) + " |",
            "|---|" + "---:|" * len(names),
        ]
        out += [f"| {label[m]} | " + " | ".join(f"{x['auc'][n]:.3f}" for n in names) + " |" for m, x in done.items()]
        out.append("")
    # the compute each audit took, attack by attack (a resumed audit's own time counts only its last pass)
    seconds = {
        m: (r["baseline"].get("seconds") or 0) + sum(x.get("seconds") or 0 for x in r["results"].values())
        for m, r in records.items()
    }
    out.append(
        f"`safeeraser audit --model {OUT}/model --adapter {OUT}/runs/METHOD --data {OUT}/data --out {AUDIT_OUT}/METHOD` for each method "
        f"(vanilla: no adapter, its answers' generation settings), all attacks, seed 0; time per audit (s, the attacks' own, on the machine as loaded when they ran): "
        + ", ".join(f"{label[m]} {s:.0f}" for m, s in seconds.items() if s is not None)
        + f". Regenerate with `{REGENERATE} --seeds none --families none --no-zoo --robustness`."
    )
    return "\n".join(out)


def regenerate_robustness(runs_from: Path | None = None, methods: tuple[str, ...] = AUDITED) -> None:
    records = run_audits(runs_from, methods)
    KEPT.mkdir(parents=True, exist_ok=True)
    kept = {m: {k: v for k, v in r.items() if k != "environment"} for m, r in records.items()}
    (KEPT / "robustness.json").write_text(json.dumps(kept, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    rewrite(DEMO_PAGE, ROBUSTNESS_BLOCK, robustness_tables(records))
    print("wrote docs/demo.md (robustness) and docs/demo/robustness.json", file=sys.stderr)


def regenerate(seeds: tuple[int, ...], runs_from: Path | None = None) -> None:
    """Run the demo at each seed (or, with ``runs_from``, read the finished runs there) and rewrite the README."""
    from safeeraser.environment import manifest, numeric_identity

    by_seed, timings = {}, {}
    for seed in seeds:
        if runs_from is None:
            by_seed[seed], timings[seed] = run_demo(seed_folder(seed), seed)
        else:
            found = runs_from / seed_folder(seed) / "results.json"
            if not found.is_file():
                raise SystemExit(f"--from-runs: {found} is missing")
            by_seed[seed], timings[seed] = json.loads(found.read_text(encoding="utf-8")), kept_timing(found.parent)
        print(f"seed {seed}: {timings[seed].describe()}", file=sys.stderr)
    env = manifest()
    seed0 = (runs_from or ROOT) / OUT / "results.json"
    if numeric_identity(env) != by_seed[0][0].get("environment"):
        raise SystemExit(
            f"{seed0} was made in another environment than this one ({by_seed[0][0].get('environment')}): rerun it here"
        )
    KEPT.mkdir(parents=True, exist_ok=True)
    (KEPT / "results.json").write_bytes(seed0.read_bytes())
    (KEPT / "environment.json").write_text(json.dumps(numeric_identity(env), indent=1) + "\n", encoding="utf-8")
    table = seed_table(by_seed[0]) + "\n\n" + environment_note(env, timings)
    rewrite(README, TABLE, table)
    rewrite(DEMO_PAGE, TABLE, table)
    if len(by_seed) > 1:
        rewrite(DEMO_PAGE, SEEDS_BLOCK, across_seeds(by_seed))
    print(f"wrote README.md, docs/demo.md and {KEPT.relative_to(ROOT)}/", file=sys.stderr)


def check() -> int:
    from safeeraser.environment import manifest, numeric_identity

    if not (KEPT / "results.json").is_file():
        print(f"error: {KEPT / 'results.json'} is missing: generate it with {REGENERATE}", file=sys.stderr)
        return 1
    rows, timing = run_demo(OUT, 0)
    fresh = (ROOT / OUT / "results.json").read_bytes()
    kept = (KEPT / "results.json").read_bytes()
    in_readme = all(seed_table(json.loads(kept)) in page.read_text(encoding="utf-8") for page in (README, DEMO_PAGE))
    recorded = json.loads((KEPT / "environment.json").read_text(encoding="utf-8"))
    here = numeric_identity(manifest())
    print(f"demo (seed 0) took {timing.describe()}", file=sys.stderr)
    if fresh == kept and in_readme:
        print("README demo table: reproduced byte for byte", file=sys.stderr)
        return 0
    what = (
        "the seed-0 table of README.md or docs/demo.md is not the kept results.json"
        if not in_readme
        else "a fresh demo run differs from docs/demo/results.json"
    )
    if here == recorded:
        print(
            f"error: {what}, in the environment the README's numbers were recorded in; regenerate them: {REGENERATE}",
            file=sys.stderr,
        )
        return 1
    print(
        f"warning: {what}; this environment differs from the recorded one ({json.dumps(here)} vs {json.dumps(recorded)}), so floating-point results may differ; to regenerate: {REGENERATE}",
        file=sys.stderr,
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="run seed 0 and compare with the README instead of rewriting it"
    )
    parser.add_argument(
        "--seeds",
        default=",".join(map(str, SEEDS)),
        help="comma-separated seeds (default 0-4; the first must be 0), or none",
    )
    parser.add_argument(
        "--families",
        default=",".join(FAMILIES),
        help=f"comma-separated families whose seed-0 demo docs/demo.md shows (default {','.join(FAMILIES)}), or none",
    )
    parser.add_argument(
        "--zoo",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"the other methods' seed-0 demo ({ZOO_OUT}; default: on)",
    )
    parser.add_argument(
        "--robustness",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"audit seed 0's runs ({AUDIT_OUT}) for docs/demo.md's robustness tables (default: on)",
    )
    parser.add_argument(
        "--successors",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"PO+PD beside SineProject and MMUnlearner, seed 0 ({SUCCESSORS_OUT}; default: on)",
    )
    parser.add_argument(
        "--audited",
        default=",".join(AUDITED),
        help=f"comma-separated runs of seed 0 the robustness tables audit (default {','.join(AUDITED)})",
    )
    parser.add_argument(
        "--from-runs",
        type=Path,
        help="read finished demo runs (demo-out, demo-out-seedN, demo-out-FAMILY, demo-out-zoo) under this folder instead of running them",
    )
    args = parser.parse_args()
    # the demo pins the kernels' instruction set (numerics.py); this process must describe the same
    # environment when it compares or records it
    from safeeraser.numerics import pin_cpu_isa, wanted

    if wanted(default=True):
        pin_cpu_isa()
    if args.check:
        return check()  # the LLaVA table only
    seeds = () if args.seeds == "none" else tuple(int(s) for s in args.seeds.split(","))
    families = () if args.families == "none" else tuple(f for f in args.families.split(",") if f)
    if seeds and seeds[0] != 0:
        raise SystemExit("--seeds: the first seed must be 0 (the README's table)")
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise SystemExit(f"--families: no docs/demo.md table for {', '.join(unknown)} (tables: {', '.join(FAMILIES)})")
    if seeds:
        regenerate(seeds, args.from_runs)
    if families:
        regenerate_families(families, args.from_runs)
    if args.zoo:
        regenerate_zoo(args.from_runs)
    if args.successors:
        regenerate_successors(args.from_runs)
    if args.robustness:
        regenerate_robustness(args.from_runs, tuple(m for m in args.audited.split(",") if m))
    return 0


if __name__ == "__main__":
    sys.exit(main())
