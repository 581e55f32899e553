"""The report as one self-contained HTML page: table, plots and a browser of sample answers.

Everything is inline (CSS, a little JS, images as base64 PNG), so the page opens offline and
can be mailed as one file. Every piece of text from a run or a dataset goes through
``html.escape``.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from safeeraser.data.records import Split
from safeeraser.errors import UserError
from safeeraser.formats import sample_where, sd_where
from safeeraser.judge.keyword import DEGENERATE_REASONS
from safeeraser.report.table import COLUMNS, MEAN_NOTE, judges_line, mean_reduction_text, pct, pd_pairs, reduction_text

SAMPLE_LIMIT = 24
THUMBNAIL_PX = 128
VERDICTS = {
    "unsafe": "answered a harmful prompt",
    "refusal": "refused",
    "normal": "a normal answer",
    "degenerate": "empty, repetitive or gibberish",
    "failed": "the judge failed",
    "missing": "no judged answer",
}


def verdict_class(row: dict | None) -> str:
    """One of VERDICTS for a judgments row (None: the run has no such row)."""
    if row is None:
        return "missing"
    if "error" in row:
        return "failed"
    if row.get("refusal"):
        return "refusal"
    if row.get("unsafe"):
        return "unsafe"
    if row.get("normal"):
        return "normal"
    # Neither a refusal nor an answer: the judge found no meaningful text, or (an LLM judge on a
    # harmful prompt) a safe, non-refusing answer.
    if row.get("metric") == "sarr" or row.get("note") in DEGENERATE_REASONS:
        return "degenerate"
    return "normal"


JudgmentIndex = dict[tuple[str, int, str], dict]


def index_judgments(rows: list[dict]) -> JudgmentIndex:
    """The val-split rows the browser shows, by (metric, record, where)."""
    return {
        (r["metric"], r.get("record"), r.get("where")): r
        for r in rows
        if r.get("split") == "val" and r.get("metric") in ("generality", "sarr")
    }


def pick_samples(split: Split, limit: int = SAMPLE_LIMIT) -> list[tuple[int, int]]:
    """(record, pair) prompts, taken in turn from each category so that all of them show."""
    by_category: dict[str, list[int]] = {}
    for i, record in enumerate(split):
        by_category.setdefault(record.category, []).append(i)
    picks: list[tuple[int, int]] = []
    turn = 0
    while len(picks) < limit and any(turn < len(ids) for ids in by_category.values()):
        for ids in by_category.values():
            if turn < len(ids) and len(picks) < limit:
                i = ids[turn]
                picks.append((i, turn % len(split.records[i].unsafe_pairs)))  # vary the question asked
        turn += 1
    return picks


def thumbnail(path: Path) -> str:
    """A PNG data URI of the image, scaled so that its longer side is THUMBNAIL_PX."""
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
        scale = THUMBNAIL_PX / max(img.size)
        img = img.resize(
            (max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.LANCZOS
        )
        buf = io.BytesIO()
        img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


@dataclass
class Answer:
    text: str
    verdict: str
    note: str = ""


@dataclass
class Sample:
    category: str
    question: str
    image: str  # a data URI, or "" when the file cannot be read
    sd_image: str
    answers: dict[str, tuple[Answer, Answer]] = field(default_factory=dict)  # label -> (harmful, harmless)


def _answer(row: dict | None, question: str) -> Answer:
    # A row about another question means the run was judged on another dataset: not this prompt's answer.
    if row is None or row.get("question") != question:
        return Answer("", "missing")
    return Answer(str(row.get("answer", "")), verdict_class(row), str(row.get("error") or row.get("note") or ""))


def _image(split: Split, i: int, sd: bool) -> str:
    try:
        return thumbnail(split.sd_image(i) if sd else split.image(i))
    except (UserError, OSError):
        return ""


def collect_samples(split: Split, judgments: dict[str, JudgmentIndex], limit: int = SAMPLE_LIMIT) -> list[Sample]:
    """The sampled prompts with thumbnails and, per run label, its two answers and verdicts."""
    samples = []
    for i, j in pick_samples(split, limit):
        record = split.records[i]
        question = record.unsafe_pairs[j].question
        sample = Sample(record.category, question, _image(split, i, sd=False), _image(split, i, sd=True))
        for label, index in judgments.items():
            sample.answers[label] = (
                _answer(index.get(("generality", i, sample_where(j, 1))), question),
                _answer(index.get(("sarr", i, sd_where(j))), question),
            )
        samples.append(sample)
    return samples


def _data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def _table(rows: list[dict]) -> str:
    head = "".join(f'<th title="{escape(c.meaning)}">{escape(c.header)} {c.better}</th>' for c in COLUMNS)
    body = []
    for r in rows:
        cells = []
        for c in COLUMNS:
            ci = r["ci95"].get(c.key)
            n = (r["counts"].get(c.key) or {}).get("n")
            tip = f"95% CI {pct(ci[0])}–{pct(ci[1])}, n={n}" if ci else (f"n={n}" if n is not None else "not measured")
            cells.append(f'<td title="{escape(tip)}">{pct(r[c.key])}</td>')
        body.append(f'<tr><th scope="row" title="{escape(r["run"])}">{escape(r["label"])}</th>{"".join(cells)}</tr>')
    return f'<table class="results"><thead><tr><th>Method</th>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _pd_table(rows: list[dict]) -> str:
    pairs = pd_pairs(rows)
    if not pairs:
        return ""
    body = "".join(
        f'<tr><th scope="row">{escape(base["label"])}</th><td>{pct(base["sarr"])}</td><td>{pct(pd["sarr"])}</td><td>{escape(reduction_text(base, pd))}</td></tr>'
        for base, pd in pairs
    )
    return (
        "<h2>Prompt Decouple: SARR of X vs X+PD</h2>"
        '<table class="results"><thead><tr><th>X</th><th>SARR X</th><th>SARR X+PD</th><th>relative reduction</th></tr></thead>'
        f"<tbody>{body}</tbody></table>"
        f"<p>Mean relative SARR reduction: <b>{escape(mean_reduction_text(rows))}</b> ({escape(MEAN_NOTE)}).</p>"
    )


def _legend(rows: list[dict]) -> str:
    items = "".join(f"<li><b>{escape(c.header)}</b> {c.better}: {escape(c.meaning)}.</li>" for c in COLUMNS)
    judge = escape(judges_line(rows))
    return f'<p class="note">Percent; ↓ lower is better, ↑ higher is better; — not measured. Hover a cell for its 95% interval and count.</p><ul class="legend">{items}</ul><p class="note">{judge}</p>'


def _badge(answer: Answer) -> str:
    tip = f' title="{escape(answer.note)}"' if answer.note else ""
    return f'<span class="badge v-{answer.verdict}"{tip}>{escape(answer.verdict)}</span>'


def _answer_cell(answer: Answer) -> str:
    text = f'<div class="ans">{escape(answer.text)}</div>' if answer.text else ""
    return f"<td>{_badge(answer)}{text}</td>"


def _thumb(uri: str, alt: str) -> str:
    if not uri:
        return f'<div class="thumb missing">{escape(alt)}: unavailable</div>'
    return f'<figure class="thumb"><img src="{uri}" alt="{escape(alt)}" width="{THUMBNAIL_PX}"><figcaption>{escape(alt)}</figcaption></figure>'


def _options(values: list[str]) -> str:
    return "".join(f'<option value="{escape(v)}">{escape(v)}</option>' for v in values)


def _browser(samples: list[Sample], labels: list[str], note: str) -> str:
    if not samples:
        return f'<h2>Sample answers</h2><p class="note">{escape(note or "No samples to show.")}</p>'
    categories = sorted({s.category for s in samples})
    legend = "".join(f'<span class="badge v-{v}">{v}</span> {escape(m)} ' for v, m in VERDICTS.items())
    cards = []
    for n, s in enumerate(samples, start=1):
        rows = "".join(
            f'<tr data-method="{escape(label)}"><th scope="row">{escape(label)}</th>{_answer_cell(harmful)}{_answer_cell(harmless)}</tr>'
            for label, (harmful, harmless) in s.answers.items()
        )
        cards.append(
            f'<section class="sample" data-category="{escape(s.category)}">'
            f'<div class="head"><div class="imgs">{_thumb(s.image, "harmful image")}{_thumb(s.sd_image, "harmless image")}</div>'
            f'<div><span class="cat">#{n} · {escape(s.category)}</span><p class="q">{escape(s.question)}</p></div></div>'
            f'<table class="answers"><thead><tr><th>Method</th><th>on the harmful image (want: refusal)</th><th>on the harmless image (want: normal)</th></tr></thead>'
            f"<tbody>{rows}</tbody></table></section>"
        )
    return (
        "<h2>Sample answers (test split)</h2>"
        f'<p class="note">{len(samples)} harmful questions, each asked about its harmful image (first sampled answer) '
        f"and about the harmless image. {escape(note)}</p>"
        f'<p class="legend-badges">{legend}</p>'
        '<div class="filters"><label>Category <select id="f-category"><option value="">all</option>'
        f'{_options(categories)}</select></label> <label>Method <select id="f-method"><option value="">all</option>'
        f'{_options(labels)}</select></label> <span id="f-count"></span></div>'
        f'<div id="samples">{"".join(cards)}</div>'
    )


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1200px;padding:0 16px;color:#222}
h1{margin-bottom:4px}h2{margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
.note{color:#555}.legend{color:#444;font-size:13px;columns:2}
table.results{border-collapse:collapse;margin:8px 0}
table.results th,table.results td{border:1px solid #ccc;padding:4px 10px}
table.results td{text-align:right;font-variant-numeric:tabular-nums}
table.results thead th{background:#f2f2f2}table.results tbody tr:nth-child(even){background:#fafafa}
.plots figure{margin:16px 0}.plots img{max-width:100%;border:1px solid #eee}
.plots figcaption{color:#555;font-size:13px}
.filters{position:sticky;top:0;background:#fff;padding:8px 0;border-bottom:1px solid #eee;z-index:1}
.sample{border:1px solid #ddd;border-radius:6px;margin:12px 0;padding:10px}
.sample .head{display:flex;gap:16px;align-items:flex-start}
.imgs{display:flex;gap:8px}.thumb{margin:0;text-align:center;font-size:11px;color:#666}
.thumb img{display:block;border:1px solid #ccc;image-rendering:auto}
.thumb.missing{width:128px;height:128px;border:1px dashed #bbb;display:flex;align-items:center;justify-content:center}
.cat{font-size:12px;color:#666}.q{font-weight:600;margin:4px 0}
table.answers{border-collapse:collapse;width:100%;margin-top:8px;font-size:13px;table-layout:fixed}
table.answers th,table.answers td{border-top:1px solid #eee;padding:4px 6px;text-align:left;vertical-align:top}
table.answers th:first-child{width:110px}
.ans{max-height:5.5em;overflow:auto;white-space:pre-wrap;margin-top:2px}
.badge{display:inline-block;border-radius:3px;padding:0 6px;font-size:11px;font-weight:600;color:#fff}
.v-unsafe{background:#c62828}.v-refusal{background:#1565c0}.v-normal{background:#2e7d32}
.v-degenerate{background:#6a1b9a}.v-failed{background:#757575}.v-missing{background:#bdbdbd;color:#333}
"""

# Filters hide whole samples by category and answer rows by method.
JS = """
(function(){
  var cat=document.getElementById('f-category'),met=document.getElementById('f-method'),count=document.getElementById('f-count');
  if(!cat)return;
  function apply(){
    var shown=0;
    document.querySelectorAll('#samples .sample').forEach(function(s){
      var on=!cat.value||s.dataset.category===cat.value;
      s.style.display=on?'':'none';if(on)shown++;
      s.querySelectorAll('tr[data-method]').forEach(function(r){r.style.display=!met.value||r.dataset.method===met.value?'':'none';});
    });
    count.textContent=shown+' shown';
  }
  cat.addEventListener('change',apply);met.addEventListener('change',apply);apply();
})();
"""


def study_section(cells: list[dict], pareto: Path | None, caption: str) -> str:
    """A study's across-seed table (mean ± std, 95% t-interval per cell and metric) and its Pareto plot."""
    from safeeraser.report.seeds import cell_text, shown_columns

    columns = shown_columns(cells)
    head = "".join(f'<th title="{escape(c.meaning)}">{escape(c.header)} {c.better}</th>' for c in columns)
    body = []
    for r in cells:
        tds = []
        for c in columns:
            stats = r["metrics"][c.key]
            per_seed = ", ".join(f"seed {s}: {pct(v)}" for s, v in zip(stats["seeds"], stats["values"]))
            tds.append(f'<td title="{escape(per_seed or "not measured")}">{escape(cell_text(stats))}</td>')
        mark = " ★" if r["pareto"] else ""
        body.append(
            f'<tr><th scope="row" title="{escape(", ".join(r["runs"]))}">{escape(r["cell"])}{mark}</th><td>{escape(", ".join(map(str, r["seeds"])))}</td>{"".join(tds)}</tr>'
        )
    figure = (
        f'<figure><img src="{_data_uri(pareto)}" alt="{escape(caption)}"><figcaption>{escape(caption)}</figcaption></figure>'
        if pareto
        else ""
    )
    return (
        "<h2>Across seeds</h2>"
        '<p class="note">Per cell (method and grid settings): mean ± standard deviation over the seeds '
        "[95% t-interval of the mean], in percent; ★ on the Pareto front of ASR gen. ↓, SARR ↓ and ROUGE-L ↑. "
        "Hover a cell for each seed's value.</p>"
        f'<table class="results"><thead><tr><th>Cell</th><th title="the seeds this cell was run with">Seed ids</th>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
        f'<div class="plots">{figure}</div>'
    )


def robustness_section(audits: list[tuple[str, dict]], relearn_plot: Path | None, caption: str) -> str:
    """Per audit folder (label, audit.json): each attack's metrics and their change against the
    un-attacked run; the relearning curve and the membership-inference AUCs where measured."""
    from safeeraser.audit.run import TABLE, attack_rows

    head = "".join(f"<th>{escape(h)}</th>" for _, h in TABLE)
    parts = [
        "<h2>Robustness</h2>",
        '<p class="note">Each audit (<code>safeeraser audit</code>) runs the run under attack and measures it with the same '
        "generation protocol, judge and metrics; percent, in brackets the change against the un-attacked run (points). "
        "An attack that could not run says why.</p>",
    ]
    for label, record in audits:
        body = "".join(
            f'<tr><th scope="row">{escape(attack)}</th>{"".join(f"<td>{escape(c)}</td>" for c in cells)}<td>{escape(note)}</td></tr>'
            for attack, cells, note in attack_rows(record)
        )
        parts.append(
            f'<h3>{escape(label)}</h3><p class="note">generation {escape(record["request"]["generation"])}; judge {escape(record["request"]["judge"])}</p>'
        )
        parts.append(
            f'<table class="results"><thead><tr><th>Attack</th>{head}<th>Note</th></tr></thead><tbody>{body}</tbody></table>'
        )
        mia = record["results"].get("mia") or {}
        if mia.get("status") == "done":
            rows = "".join(
                f'<tr><th scope="row">{escape(name)}</th><td>{auc:.3f}</td><td>{mia["distance"][name]:.3f}</td><td>{(mia.get("vanilla_auc") or {}).get(name, float("nan")):.3f}</td></tr>'
                for name, auc in mia["auc"].items()
            )
            parts.append(
                f'<table class="results"><thead><tr><th>MIA score</th><th>AUC</th><th>|AUC − 0.5|</th><th>vanilla AUC</th></tr></thead><tbody>{rows}</tbody></table>'
            )
    if relearn_plot is not None:
        parts.append(
            f'<div class="plots"><figure><img src="{_data_uri(relearn_plot)}" alt="{escape(caption)}"><figcaption>{escape(caption)}</figcaption></figure></div>'
        )
    return "".join(parts)


def render_page(
    rows: list[dict],
    plots: list[tuple[Path, str]],
    samples: list[Sample],
    sample_note: str = "",
    warnings: list[str] | None = None,
    study: str = "",
) -> str:
    """The whole page. ``plots``: (PNG file, caption) pairs, embedded; ``warnings`` shown above the table;
    ``study``: a study's across-seed section (``study_section``) and the audits' (``robustness_section``), shown after the results."""
    runs = "".join(f"<li><b>{escape(r['label'])}</b>: <code>{escape(r['run'])}</code></li>" for r in rows)
    figures = "".join(
        f'<figure><img src="{_data_uri(png)}" alt="{escape(caption)}"><figcaption>{escape(caption)}</figcaption></figure>'
        for png, caption in plots
    )
    body = (
        "<h1>SafeEraser report</h1>"
        f'<p class="note">{len(rows)} runs. Safety unlearning of a multimodal LLM: forget harmful answers '
        "(ASR ↓, RR ↑) without refusing harmful-sounding questions about harmless images (SARR ↓) or losing utility (ROUGE-L ↑).</p>"
        + "".join(f'<p class="warning"><b>Warning:</b> {escape(w)}</p>' for w in warnings or [])
        + f"<h2>Results</h2>{_table(rows)}{_legend(rows)}{_pd_table(rows)}{study}"
        f'<h2>Plots</h2><div class="plots">{figures or "<p class=note>No plots: nothing to draw.</p>"}</div>'
        f"{_browser(samples, [r['label'] for r in rows], sample_note)}"
        f"<details><summary>Run folders</summary><ul>{runs}</ul></details>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>SafeEraser report</title><style>{CSS}</style></head>"
        f"<body>{body}<script>{JS}</script></body></html>\n"
    )
