"""The one table that tests/gpu/check.sh prints, from what its parts left in its output folder:
    python tests/gpu/table.py OUT TESTS_RC MODE_RC THROUGHPUT_RC    (exit 0 only if every part passed)"""
from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def main(out: Path, tests_rc: int, mode_rc: int, thr_rc: int) -> int:
    problems = []
    lines = []
    mode, thr = load(out / "mode.json"), load(out / "throughput.json")
    env = (mode or thr or {}).get("env", {})
    lines.append(f"== dl2bench GPU check: {env.get('device_name', '?')}  torch {env.get('torch_version', '?')}  "
                 f"CUDA {env.get('cuda_version', '?')}  host {env.get('host', '?')}  git {env.get('git_sha', '?')}")
    try:
        suite = ET.parse(out / "cuda.xml").getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        n, f, e, s = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
        verdict = "ok" if tests_rc == 0 and not f and not e and not s else "FAILED"
        lines.append(f"{'CUDA tests (pytest -m cuda)':<44}{n - f - e - s} passed, {f} failed, {e} errors, {s} skipped  {verdict}")
        if verdict != "ok":
            problems.append("CUDA tests")
    except (OSError, ET.ParseError, AttributeError):
        lines.append(f"{'CUDA tests (pytest -m cuda)':<44}no result (exit {tests_rc})  FAILED")
        problems.append("CUDA tests")
    lines.append("")
    lines.append(f"{'benchmark mode (median [IQR])':<30}{'train samples/s':>22}{'bare loop':>22}{'ratio':>7}"
                 f"{'infer samples/s':>22}{'lat ms':>9}{'% peak':>8}  within 3% of bare")
    for r in (mode or {}).get("results", []):
        tr = r.get("train", {})
        inf, lat = r.get("infer", {}).get("bench", {}), r.get("latency", {}).get("bench", {})
        frac = r.get("fraction_of_peak")
        lines.append(f"{r['model'] + ' b' + str(r['batch_size']) + ' ' + r['precision']:<30}"
                     f"{tr['bench']['median']:>12,.0f} [{tr['bench']['iqr']:>7,.0f}]{tr['bare']['median']:>12,.0f} "
                     f"[{tr['bare']['iqr']:>7,.0f}]{tr['ratio']:>7.3f}"
                     f"{inf.get('median', float('nan')):>12,.0f} [{inf.get('iqr', float('nan')):>7,.0f}]"
                     f"{lat.get('median', float('nan')):>9.3g}{(100 * frac) if frac else float('nan'):>7.2f}%  "
                     + ("ok" if abs(tr["ratio"] - 1) <= 0.03 else "no"))
    if mode and mode.get("results"):
        lines.append(f"  peak: {mode['results'][0].get('peak_source')}")
    if mode_rc != 0 or not mode:
        lines.append(f"  benchmark mode part: exit {mode_rc}  FAILED")
        problems.append("benchmark mode")
    lines.append("")
    for loop in (thr or {}).get("loops", []):
        lines.append(f"{'training loop vs bare: ' + loop['model']:<44}dl2bench {loop['dl2bench_median']:,.0f} / bare "
                     f"{loop['bare_median']:,.0f} samples/s = {loop['ratio']:.3f} (bare2/bare {loop['control_ratio']:.3f})")
    for ld in (thr or {}).get("loaders", []):
        label = ld["loader"] + (f" (workers {ld['num_workers']})" if ld.get("num_workers") is not None else "")
        lines.append(f"{'loader: ' + label:<44}{ld['median_samples_per_s']:,.0f} samples/s "
                     f"({ld['samples_per_s_ratio_to_tensor']:.2f}x the tensor loader)")
    if thr_rc != 0 or not thr:
        lines.append(f"  throughput benchmark part: exit {thr_rc}  FAILED")
        problems.append("throughput benchmark")
    lines.append("")
    lines.append("RESULT: " + ("all parts passed" if not problems else "FAILED: " + ", ".join(problems)))
    print("\n".join(lines))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), *(int(a) for a in sys.argv[2:5])))
