"""An audit's record read back: ``audit.md``'s table (``to_markdown``) and ``load_audit`` for the report."""

from __future__ import annotations

from pathlib import Path

from safeeraser.errors import UserError
from safeeraser.io import read_json

AUDIT_FILE = "audit.json"


def _pct(value) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def _signed(value) -> str:
    return "" if value is None else f" ({100 * value:+.1f})"


TABLE = (
    ("asr_efficacy", "ASR eff. ↓"),
    ("asr_generality", "ASR gen. ↓"),
    ("rr_generality", "RR gen. ↑"),
    ("sarr", "SARR ↓"),
    ("rouge_l", "ROUGE-L ↑"),
)


def attack_rows(record: dict) -> list[tuple[str, list[str], str]]:
    """(attack, cells of TABLE as 'value (change)', note) for the baseline and every metric attack."""
    base = record["baseline"]["metrics"]
    rows = [("none (baseline)", [_pct(base.get(k)) for k, _ in TABLE], record["baseline"].get("predictions", ""))]
    for attack in record["attacks"]:
        result = record["results"].get(attack) or {"status": "not run", "reason": "not reached"}
        if result["status"] != "done":
            rows.append((attack, ["—"] * len(TABLE), f"not run: {result.get('reason', '')}"))
        elif "metrics" in result:
            note = result.get("library") or result.get("note") or ""
            cells = [_pct(result["metrics"].get(k)) + _signed(result["delta"].get(k)) for k, _ in TABLE]
            rows.append((attack, cells, note))
    return rows


def to_markdown(record: dict) -> str:
    request = record["request"]
    lines = [
        "# Audit",
        "",
        f"Model `{request['model']}`, adapter `{request['adapter']}`, data `{request['data']}`; generation {request['generation']}; judge {request['judge']}; seed {request['seed']}.",
        "Percent; in brackets the change against the un-attacked run (points).",
        "",
        "| attack | " + " | ".join(h for _, h in TABLE) + " | note |",
        "|---|" + "---:|" * len(TABLE) + "---|",
    ]
    lines += [f"| {a} | " + " | ".join(cells) + f" | {note} |" for a, cells, note in attack_rows(record)]
    relearn = record["results"].get("relearn") or {}
    if relearn.get("status") == "done":
        lines += [
            "",
            f"Relearning: ASR on the {relearn['measured_pairs']} harmful training pairs left out of the {relearn['trained_pairs']} it trained on; vanilla (ceiling): {_pct(relearn['vanilla_asr'])}.",
            "",
            "| steps | ASR eff. | RR eff. | share of the forgotten ASR back |",
            "|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {p['steps']} | {_pct(p['asr_efficacy'])} | {_pct(p['rr_efficacy'])} | {_pct(p['recovered'])} |"
            for p in relearn["curve"]
        ]
    mia = record["results"].get("mia") or {}
    if mia.get("status") == "done":
        lines += [
            "",
            f"Membership inference ({mia['members']} members, {mia['non_members']} non-members; {mia.get('library') or ''}): AUC, |AUC − 0.5| in brackets.",
            "",
            "| score | run | vanilla |",
            "|---|---:|---:|",
        ]
        lines += [
            f"| {name} | {auc:.3f} ({mia['distance'][name]:.3f}) | {mia['vanilla_auc'].get(name, float('nan')):.3f} |"
            for name, auc in mia["auc"].items()
        ]
    lines += ["", f"Audit time: {record.get('seconds', 0):.0f} s."]
    return "\n".join(lines) + "\n"


def load_audit(folder: Path) -> dict:
    """An audit folder's audit.json, checked enough to report it."""
    path = Path(folder) / AUDIT_FILE
    if not path.is_file():
        raise UserError(f"{folder}: no {AUDIT_FILE} (run `safeeraser audit ... --out {folder}` first)")
    record = read_json(path)
    if (
        not isinstance(record, dict)
        or not isinstance(record.get("results"), dict)
        or not isinstance(record.get("baseline"), dict)
    ):
        raise UserError(f"{path}: not an audit.json from `safeeraser audit`")
    return record
