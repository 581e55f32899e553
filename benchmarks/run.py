"""Performance benchmarks of safeeraser, every comparison measured side by side in one run.

    python benchmarks/run.py [--quick] [--out benchmarks/results] [--only generation,training,scaling,judge]

Writes OUT/results.json and OUT/results.md and prints the table. Demo data and models are built
once into benchmarks/.cache (delete it to rebuild). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
README_MARKERS = ("<!-- results:start -->", "<!-- results:end -->")
SECTIONS = ("generation", "training", "scaling", "judge")
TRAINING_METHODS = ("ga", "gd", "kl", "po", "npo", "ga+pd", "gd+pd", "kl+pd", "po+pd", "npo+pd")

# Sizes per mode. --quick exists to develop the harness; the full run is the one to report.
PLANS = {
    "full": {
        "generation": {"images_per_category": 12, "max_new_tokens": 48, "batch_sizes": [3, 12, 48, 96]},
        "training": {"methods": TRAINING_METHODS, "steps": 3, "batch_size": 2},
        "scaling": {"sizes": [12, 24, 48], "max_new_tokens": 48},
        "judge": {"items": 160},
    },
    "quick": {
        "generation": {"images_per_category": 6, "max_new_tokens": 24, "batch_sizes": [16, 48]},
        "training": {"methods": ("ga", "kl", "npo"), "steps": 3, "batch_size": 1},
        "scaling": {"sizes": [3, 6, 12], "max_new_tokens": 16},
        "judge": {"items": 48},
    },
}


def machine() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    import torch
    import transformers

    return {
        "cores": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "ram_gib": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "transformers": transformers.__version__,
        "load_average_at_start": os.getloadavg(),
    }


def busy_cpu_seconds() -> tuple[float, float]:
    """(CPU seconds all processes on the machine have used since boot, CPU seconds of this run: us and our children)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    machine_total = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    ours = sum(
        resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return machine_total, ours


def run_sections(sections: list[str], plan: dict, cache: Path) -> dict:
    import cache as built

    results = {}
    if "generation" in sections:
        import generation

        p = plan["generation"]
        print("generation throughput", flush=True)
        results["generation"] = generation.run(
            built.model(cache, "tiny"),
            built.demo_data(cache, p["images_per_category"]),
            batch_sizes=p["batch_sizes"],
            max_new_tokens=p["max_new_tokens"],
        )
    if "training" in sections:
        import training

        p = plan["training"]
        print("training step time and peak memory", flush=True)
        results["training"] = training.run(
            built.model(cache, "small"),
            built.demo_data(cache, 12),
            list(p["methods"]),
            steps=p["steps"],
            batch_size=p["batch_size"],
        )
    if "scaling" in sections:
        import scaling

        p = plan["scaling"]
        print("scaling", flush=True)
        model = built.model(cache, "tiny")
        results["scaling"] = scaling.run(
            model, {n: built.demo_data(cache, n) for n in p["sizes"]}, max_new_tokens=p["max_new_tokens"]
        )
    if "judge" in sections:
        import judging

        print("judge throughput", flush=True)
        results["judge"] = judging.run(plan["judge"]["items"])
    return results


def _f(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}"


def _met(ok: bool) -> str:
    return "**met**" if ok else "**NOT met**"


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"Measured {report['finished']} in {report['seconds']:.0f} s ({report['mode']} mode) on {m['cores']} cores of {m['cpu']}, "
        f"{m['ram_gib']} GiB RAM, Python {m['python']}, torch {m['torch']} ({m['torch_threads']} threads), transformers {m['transformers']}; "
        f"1-minute load average {m['load_average_at_start'][0]:.2f} at the start; other processes kept "
        f"{report['other_processes_cores']:.2f} of the {m['cores']} cores busy on average while it ran.",
        "",
    ]
    r = report["results"]
    if "generation" in r:
        g = r["generation"]
        agree = g["greedy_agreement"]
        lines += [
            f"### 1. Generation throughput (tiny model, val split: {g['prompts']} prompts, K={g['num_samples']} samples per harmful question, "
            f"max_new_tokens={g['max_new_tokens']}, T={g['temperature']}, top-p={g['top_p']}, seed {g['seed']})",
            "",
            "| side | batch size | seconds | prompts/s | generated tokens/s | speedup (prompts/s) | tokens/s ratio |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for row in g["rows"]:
            lines.append(
                f"| {row['side']} | {row['batch_size']} | {_f(row['seconds'], 1)} | {_f(row['prompts_per_s'])} | {_f(row['tokens_per_s'], 1)} "
                f"| {_f(row['speedup'])}× | {_f(row['tokens_per_s_ratio'])}× |"
            )
        meeting = g["smallest_batch_size_meeting_target"]
        lines += [
            "",
            f"Target ≥{g['target']:g}×: {_met(g['target_met'])} — best {_f(g['best_speedup'])}× at batch size {g['best_batch_size']}"
            + (f"; batch size {meeting} is the smallest tried that reaches it." if meeting else "."),
            f"The published loop made {g['published_generate_calls']} `generate` calls. Greedy answers identical on both sides: "
            f"{agree['identical']}/{agree['greedy_prompts']}.",
            "",
        ]
    if "training" in r:
        t = r["training"]
        lines += [
            f"### 2. Unlearning step time and peak memory (small model, batch size {t['batch_size']} per view, "
            f"median of {t['steps'] - 1} steps after a warm-up step, each method in a fresh process)",
            "",
            "| method | step seconds | peak RSS (MiB) | peak vs GA |",
            "|---|---:|---:|---:|",
        ]
        for row in t["rows"]:
            lines.append(
                f"| {row['method']} | {_f(row['step_seconds'])} | {row['peak_rss_mb']:.0f} | {_f(row['peak_vs_ga'], 3)}× |"
            )
        ratios = t["peak_ratios"]
        lines += [
            "",
            f"Target KL and NPO ≤{t['target']:g}× GA: {_met(t['target_met'])} — "
            + ", ".join(f"{name} = {_f(v, 3)}×" for name, v in ratios.items())
            + f". Resident memory after the imports alone: {t['rows'][0]['baseline_rss_mb']:.0f} MiB.",
            "",
        ]
    if "scaling" in r:
        s = r["scaling"]
        lines += [
            f"### 3. Scaling (tiny model; generation of the val split at batch size {s['generation']['batch_size']}, "
            f"max_new_tokens={s['generation']['max_new_tokens']}; one {s['method'].upper()} epoch with the demo preset)",
            "",
            "| images per category | scale | val prompts | generation s | ratio | epoch steps | epoch s | ratio |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in s["rows"]:
            lines.append(
                f"| {row['images_per_category']} | {row['scale']:g}× | {row['val_prompts']} | {_f(row['generation_seconds'], 1)} | {_f(row['generation_ratio'])}× "
                f"| {row['epoch_steps']} | {_f(row['epoch_seconds'], 1)} | {_f(row['epoch_ratio'])}× |"
            )
        lines += ["", f"Linear (every ratio ≤{s['tolerance']:g}× its scale): {_met(s['linear'])}.", ""]
    if "judge" in r:
        j = r["judge"]
        lines += [
            f"### 4. LLM-judge throughput (loopback OpenAI-compatible server, {j['latency_s'] * 1000:.0f} ms per request)",
            "",
            "| concurrency | items | seconds | items/s | failed |",
            "|---:|---:|---:|---:|---:|",
        ]
        for row in j["rows"]:
            lines.append(
                f"| {row['concurrency']} | {row['items']} | {_f(row['seconds'])} | {_f(row['items_per_s'], 1)} | {row['failed']} |"
            )
        lines += [
            "",
            f"Target ≥{j['target']:g}× at the default concurrency: {_met(j['target_met'])} — {_f(j['speedup'])}×.",
            "",
        ]
    return "\n".join(lines)


def update_readme(table: str, command: str) -> None:
    """Put the table of a full run between the README's markers, so it always shows measured figures."""
    text = README.read_text()
    start, end = README_MARKERS
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    README.write_text(f"{head}{start}\nRerun: `{command}`\n\n{table}\n{end}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description="safeeraser performance benchmarks")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for developing the harness")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--cache", type=Path, default=HERE / ".cache")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    args = parser.parse_args()
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}; expected {', '.join(SECTIONS)}")

    os.environ.setdefault("TQDM_DISABLE", "1")
    sys.path.insert(0, str(HERE))
    from safeeraser.models.loading import quiet_transformers

    quiet_transformers()
    mode = "quick" if args.quick else "full"
    began = time.perf_counter()
    info = machine()
    busy_before = busy_cpu_seconds()
    results = run_sections(sections, PLANS[mode], args.cache)
    busy_after = busy_cpu_seconds()
    seconds = time.perf_counter() - began
    # Cores other processes kept busy while we measured: 0 on a quiet machine.
    others = ((busy_after[0] - busy_before[0]) - (busy_after[1] - busy_before[1])) / seconds
    report = {
        "mode": mode,
        "command": " ".join(["python", "benchmarks/run.py", *sys.argv[1:]]),
        "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": seconds,
        "machine": info,
        "load_average_at_end": os.getloadavg(),
        "other_processes_cores": max(0.0, others),
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    table = markdown(report)
    (args.out / "results.md").write_text(table + "\n")
    if mode == "full" and set(sections) == set(SECTIONS):
        update_readme(table, report["command"])
    print()
    print(table)


if __name__ == "__main__":
    main()
