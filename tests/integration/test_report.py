"""`strata report` on the published sample, rendered by a real headless browser (Debian's
chromium, which `make test` installs): every chart decodes, the key tables are there."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from pipeline_sample import END, PREVIOUS

from dagster_project.cli import main

# Counted after the page has loaded: images the browser decoded, of all images in the page.
PROBE = (
    "<script>window.addEventListener('load', () => {"
    " const ok = [...document.images].filter(i => i.complete && i.naturalWidth > 0);"
    " document.body.dataset.images = document.images.length;"
    " document.body.dataset.decoded = ok.length; });</script>"
)


def rendered_dom(page: Path, tmp_path: Path) -> str:
    browser = shutil.which("chromium")
    assert browser, "chromium is missing: `make test` installs Debian's chromium package"
    probe = tmp_path / f"probe-{page.name}"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"))
    done = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_report_is_one_offline_file_whose_charts_and_tables_render(
    pipeline_home, tmp_path, capsys
):
    target = tmp_path / "report.html"
    assert main(["report", "--home", str(pipeline_home.home), "--out", str(target)]) == 0
    assert f"report for {END}: {target}" in capsys.readouterr().out
    page = target.read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page  # nothing fetched at view time

    dom = rendered_dom(target, tmp_path)
    body = re.search(r"<body[^>]*>", dom).group(0)
    images = int(re.search(r'data-images="(\d+)"', body).group(1))
    assert images == 5  # two snapshots: the migration chart is drawn too
    assert f'data-decoded="{images}"' in body
    for table in ("segments", "clusters", "model-quality", "data-quality"):
        assert f'<table id="{table}">' in dom, table
    segments = dom.split('<table id="segments">')[1].split("</table>")[0]
    for key, label in (("champions", "冠军客户"), ("important_value", "重要价值客户")):
        assert key in segments and label in segments
    assert f"Strata segments on {END}" in dom


def test_the_report_of_an_earlier_snapshot_and_of_a_missing_one(pipeline_home, tmp_path):
    earlier = tmp_path / "earlier.html"
    assert (
        main(
            [
                "report",
                "--home",
                str(pipeline_home.home),
                "--date",
                str(PREVIOUS),
                "--out",
                str(earlier),
            ]
        )
        == 0
    )
    assert f"Strata segments on {PREVIOUS}" in earlier.read_text(encoding="utf-8")
    with pytest.raises(SystemExit, match=f"no snapshot 2020-01-01 .* {PREVIOUS} .. {END}"):
        main(["report", "--home", str(pipeline_home.home), "--date", "2020-01-01"])
