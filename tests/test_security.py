"""What input must never do: write outside --out, or run as code in the HTML report."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import gen_results as G
from reports import build

ROOT = Path(__file__).resolve().parents[1]
SUBMIT = ROOT / "jobs" / "submit.py"


def tree(p: Path):
    return sorted(str(q.relative_to(p)) for q in p.rglob("*"))


@pytest.mark.parametrize("name", ["../escaped", "../../etc/x", "/tmp/abs", "a/b", "..", ".", "x\\0y", "x\\ny"])
def test_a_sweep_name_cannot_leave_out(tmp_path, name):
    """The sweep's name names its folder under --out: anything that is not one plain folder name is
    refused (exit 2, one message naming the key), and nothing is written anywhere."""
    box = tmp_path / "box"
    box.mkdir()
    sweep = box / "s.yaml"
    sweep.write_text(f'name: "{name}"\nmethod: grid\nparameters:\n  task: {{value: fashion_mnist}}\n'
                     f"  epochs: {{value: 1}}\n")
    before = tree(tmp_path)
    r = subprocess.run([sys.executable, str(SUBMIT), str(sweep), "--out", str(box / "runs"), "--cluster", "debug",
                        "--wandb", "disabled"], capture_output=True, text=True, cwd=box, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    err = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and "name:" in err[0] and str(sweep) in err[0], r.stderr
    assert tree(tmp_path) == before


PAYLOADS = {
    "script": "<script>document.body.setAttribute('data-pwned','script')</script>",
    "img": "<img src=x onerror=\"document.body.setAttribute('data-pwned','img')\">",
    "attr": "\" onmouseover=\"document.body.setAttribute('data-pwned','attr')",
}


def test_report_html_shows_hostile_strings_as_text(tmp_path):
    """Config values, a sweep name and a failure reason holding HTML are shown as text: in headless
    Chromium no payload runs and each reads back verbatim."""
    exe = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if exe is None:
        pytest.skip("chromium not installed (CI installs Debian's: apt-get install chromium)")
    root = tmp_path / "s"
    G.write_manifest(root, "s")
    m = json.loads((root / "manifest.json").read_text())
    m["sweep"]["name"] = PAYLOADS["img"]
    m["sweep"]["description"] = PAYLOADS["attr"]
    (root / "manifest.json").write_text(json.dumps(m))
    for seed in (0, 1):
        G.write_run(root, {"optimizer": PAYLOADS["script"], "seed": seed})
        G.write_run(root, {"optimizer": "adam", "seed": seed})
    bad = G.write_run(root, {"optimizer": "adam", "seed": 9}, status="failed", stop_at=1)
    s = json.loads((bad / "summary.json").read_text())
    s["error"] = s["reason"] = PAYLOADS["img"]
    (bad / "summary.json").write_text(json.dumps(s))
    assert build.main([str(root), "--out", str(tmp_path / "out")]) == 0
    html = (tmp_path / "out" / "report.html").read_text()
    for p in PAYLOADS.values():
        assert p not in html  # only escaped copies
    got = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                          "--virtual-time-budget=5000", "--dump-dom", (tmp_path / "out" / "report.html").as_uri()],
                         capture_output=True, text=True, timeout=120)
    body = re.search(r"<body[^>]*>", got.stdout)
    assert body, got.stderr[-2000:]
    assert "data-pwned" not in body.group(0), body.group(0)
    text = re.sub(r"<[^>]+>", "", got.stdout)
    import html as H

    text = H.unescape(text)
    for key in ("script", "img"):
        assert PAYLOADS[key] in text, key


def test_levels_that_look_like_tex_are_drawn_as_text(tmp_path):
    """matplotlib parses "$...$" as mathtext: a level such as "$\\undefined{x$" once stopped the report
    with a parser traceback. Text is text, in the figures and the PDF."""
    root = tmp_path / "s"
    G.write_manifest(root, "s")
    for seed in (0, 1):
        G.write_run(root, {"optimizer": "$\\undefinedmacro{x$", "seed": seed})
        G.write_run(root, {"optimizer": "a_b^c $x$", "seed": seed})
    assert build.main([str(root)]) == 0
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", str(root / "report.pdf"), "-"], capture_output=True, text=True).stdout
        assert "a_b^c $x$" in text and "$\\undefinedmacro{x$" in text
