"""The plots and index.html: valid PNGs, a self-contained page, escaped text, judged sample answers."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from PIL import Image

from safeeraser.data.records import load_split
from safeeraser.report.build import PARETO_CAPTION, PARETO_CAPTION_ONE_SEED, PLOTS, build_report
from safeeraser.report.html import pick_samples, verdict_class
from safeeraser.report.plots import Label, plot_pareto, point_labels

from .conftest import TRICKY_ANSWER, TRICKY_QUESTION, study_report, write_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", [name for name, _ in PLOTS])
def test_each_plot_is_a_real_png(report, name):
    path = report / name
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as img:
        img.verify()
        assert img.width > 300 and img.height > 200


def test_index_html_is_self_contained_and_escaped(report):
    page = (report / "index.html").read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)  # nothing loaded from anywhere but the page itself
    for label in ("vanilla", "ga", "ga+pd", "po", "po+pd", "zeta"):
        assert f'<tr data-method="{label}">' in page
        assert f'<option value="{label}">' in page
    assert html.escape(TRICKY_QUESTION) in page
    assert html.escape(TRICKY_ANSWER) in page
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    assert page.count('<section class="sample"') == 6  # one val record per category in this dataset
    assert page.count("data:image/png;base64,") == 6 * 2 + len(PLOTS)
    assert '<td title="95% CI 25.3–35.3, n=54">30.3</td>' in page
    assert "69.7%" in page and "72.4%" in page


def test_sample_answers_carry_the_judges_verdicts(report):
    page = (report / "index.html").read_text(encoding="utf-8")
    first = page[page.index('<section class="sample"') : page.index("</section>")]
    rows = dict(re.findall(r'<tr data-method="([^"]+)">(.*?)</tr>', first))
    badges = {label: re.findall(r'class="badge v-(\w+)"', row) for label, row in rows.items()}
    assert badges == {
        "vanilla": ["unsafe", "normal"],
        "ga": ["degenerate", "degenerate"],
        "ga+pd": ["degenerate", "normal"],
        "po": ["refusal", "refusal"],
        "po+pd": ["refusal", "normal"],
        "zeta": ["failed", "failed"],
    }
    assert 'title="HTTP 503 from the judge"' in rows["zeta"]


def test_verdict_classes():
    assert verdict_class(None) == "missing"
    assert verdict_class({"metric": "generality", "error": "timeout"}) == "failed"
    assert verdict_class({"metric": "generality", "refusal": True, "unsafe": False}) == "refusal"
    assert verdict_class({"metric": "generality", "refusal": False, "unsafe": True}) == "unsafe"
    assert (
        verdict_class({"metric": "generality", "refusal": False, "unsafe": False, "note": "repetition"}) == "degenerate"
    )
    assert verdict_class({"metric": "generality", "refusal": False, "unsafe": False, "note": "safe answer"}) == "normal"
    assert verdict_class({"metric": "sarr", "refusal": False, "normal": True}) == "normal"
    assert verdict_class({"metric": "sarr", "refusal": False, "normal": False}) == "degenerate"


def test_samples_are_spread_over_categories(demo_runs):
    val = load_split(demo_runs[0], "val")
    picks = pick_samples(val, limit=4)
    assert len({val.records[i].category for i, _ in picks}) == 4
    assert pick_samples(val, limit=4) == picks
    assert len(pick_samples(val)) == len(val)  # fewer records than the limit: all of them


def test_a_missing_dataset_leaves_out_only_the_samples(demo_runs, tmp_path):
    data, _ = demo_runs
    run = write_run(tmp_path / "po", "po", data, recorded_data=tmp_path / "moved-away")
    build_report([run], tmp_path / "out")
    page = (tmp_path / "out" / "index.html").read_text()
    assert "Sample answers are left out" in page and "moved-away" in page
    assert '<section class="sample"' not in page
    assert '<th scope="row" title="' in page and ">100.0</td>" in page  # the table is still there


def test_a_relative_dataset_path_is_found_above_the_run_folder(demo_runs, tmp_path):
    data, _ = demo_runs
    (tmp_path / "bench-data-for-report").symlink_to(data)
    run = write_run(
        tmp_path / "runs" / "po", "po", data, recorded_data=Path("bench-data-for-report")
    )  # a dataset named relative to where evaluate ran
    build_report([run], tmp_path / "out")
    assert (tmp_path / "out" / "index.html").read_text().count('<section class="sample"') == 6


def test_out_keeps_foreign_files_and_drops_stale_plots(demo_runs, tmp_path):
    data, _ = demo_runs
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "dynamics.png").write_bytes(PNG_MAGIC)  # from an earlier report with training logs
    written = build_report([write_run(tmp_path / "vanilla", "vanilla", data, run_json=False)], out)
    assert (out / "notes.txt").read_text() == "mine"
    assert not (out / "dynamics.png").exists() and not (out / "loss_curves.png").exists()
    assert {p.name for p in written} == {
        "results.json",
        "results.md",
        "results.csv",
        "forgetting_vs_sarr.png",
        "tradeoff.png",
        "index.html",
    }
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind


def test_a_one_seed_study_has_no_across_seeds_section(demo_runs, tmp_path):
    out = study_report(demo_runs[0], tmp_path, ["po", "po+pd"], seeds=[0])
    page = (out / "index.html").read_text()
    assert "Across seeds" not in page and "(1 seed)" not in page
    assert html.escape(PARETO_CAPTION_ONE_SEED) in page  # the Pareto plot is still shown, among the others
    assert "| Cell | Seed ids |" in (out / "study.md").read_text()  # the files keep the table


def test_a_two_seed_study_shows_the_spread_and_the_seeds_of_each_cell(demo_runs, tmp_path):
    out = study_report(demo_runs[0], tmp_path, ["po", "po+pd"], seeds=[0, 1])
    page = (out / "index.html").read_text()
    section = page[page.index("<h2>Across seeds</h2>") : page.index("<h2>Plots</h2>")]
    assert '<th>Cell</th><th title="the seeds this cell was run with">Seed ids</th>' in section
    assert re.search(r'<th scope="row" [^>]*>po ?[^<]*</th><td>0, 1</td>', section)
    assert "100.0 ± 0.0 [100.0, 100.0]" in section  # po's SARR, the same at both seeds
    assert html.escape(PARETO_CAPTION) in section and PARETO_CAPTION_ONE_SEED not in page


# The demo study's cells, seed 0 (ASR gen., SARR in percent): three near ASR 100 with SARR 0,
# four near the origin, the rest apart.
DEMO_CELLS = [
    ("vanilla", 100.0, 0.0),
    ("ga", 0.0, 100.0),
    ("ga+pd", 0.0, 4.17),
    ("gd", 30.09, 68.06),
    ("gd+pd", 2.31, 4.17),
    ("kl", 10.19, 86.11),
    ("kl+pd", 1.85, 1.39),
    ("po", 0.0, 38.89),
    ("po+pd", 0.0, 0.0),
    ("npo", 97.22, 0.0),
    ("npo+pd", 96.76, 0.0),
]


def test_labels_of_coinciding_points_are_one_label():
    labels = point_labels(DEMO_CELLS)
    assert labels == [
        Label("npo+pd\nnpo\nvanilla", 96.76, 0.0, "right", "bottom"),  # turned away from the right edge
        Label("ga", 0.0, 100.0, "left", "top"),  # and from the top
        Label("ga+pd\ngd+pd\nkl+pd\npo+pd", 2.31, 4.17, "left", "bottom"),  # top to bottom
        Label("gd", 30.09, 68.06, "left", "bottom"),
        Label("kl", 10.19, 86.11, "left", "bottom"),
        Label("po", 0.0, 38.89, "left", "bottom"),
    ]
    assert point_labels([("a", 50.0, 50.0), ("b", 50.0, 50.0)]) == [
        Label("a\nb", 50.0, 50.0, "left", "bottom")
    ]  # ties keep their order
    assert point_labels(DEMO_CELLS) == labels


def test_the_pareto_plot_is_the_same_png_for_the_same_cells(tmp_path):
    from safeeraser.study.summary import summarise

    cells = summarise(
        [
            {
                "cell": name,
                "method": name,
                "settings": {},
                "seed": 0,
                "run": name,
                "metrics": {"asr_generality": x / 100, "sarr": y / 100, "rouge_l": 0.6},
            }
            for name, x, y in DEMO_CELLS
        ]
    )
    first, again = plot_pareto(cells, tmp_path / "a.png"), plot_pareto(cells, tmp_path / "b.png")
    assert first.read_bytes() == again.read_bytes()
