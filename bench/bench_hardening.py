"""Benchmark: the hardening suites of issue 12 at full size, printing the figures docs/security.md quotes.

    .venv/bin/python bench/bench_hardening.py                  # 8 × 100 judgements per backend, fuzz × 2
    .venv/bin/python bench/bench_hardening.py --fuzz-scale 4 --suite fuzz

The suites are the tests themselves (tests/test_hardening_*.py), run with their full-size switches:
YZT_HARDENING_FULL=1 (8 clients × 100 judgements per backend instead of 8 × 40) and YZT_FUZZ_SCALE=<k>
(k times the generated requests per operation CI makes, on both OpenAPI documents). Each suite prints what it
measured on lines starting with ``hardening:``; this script collects them and every suite's pass / fail count.
A suite that fails here fails the benchmark (exit 1): figures of a failing suite are not figures.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUITES = ["fuzz", "badinput", "malformed", "crash", "concurrency", "limits", "audit", "tokens"]


def run_suite(name: str, env: dict[str, str]) -> tuple[int, list[str], str, float]:
    """(exit code, the suite's ``hardening:`` lines, pytest's summary line, seconds)."""
    path = ROOT / "tests" / f"test_hardening_{name}.py"
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", str(path)],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    lines = [line.strip() for line in proc.stdout.splitlines() if line.strip().startswith("hardening:")]
    summary = next((line.strip("= ").strip() for line in reversed(proc.stdout.splitlines())
                    if re.search(r"\d+ (passed|failed|error)", line)), "no summary")
    if proc.returncode:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-2000:])
    return proc.returncode, lines, summary, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fuzz-scale", type=int, default=2, help="times the fuzz requests CI makes (default 2)")
    parser.add_argument("--suite", action="append", choices=SUITES, help="run only this suite (repeatable)")
    args = parser.parse_args()
    env = {**os.environ, "YZT_HARDENING_FULL": "1", "YZT_FUZZ_SCALE": str(args.fuzz_scale),
           "PYTHONPATH": str(ROOT)}
    print(f"hardening suites at full size: 8 × 100 judgements per backend, fuzz {args.fuzz_scale} × CI; load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    failed = 0
    for name in args.suite or SUITES:
        code, lines, summary, seconds = run_suite(name, env)
        failed += code != 0
        print(f"\n[{name}] {summary} in {seconds:.0f} s")
        for line in lines:
            print("  " + line.removeprefix("hardening:").strip())
    print(f"\n{len(args.suite or SUITES) - failed} of {len(args.suite or SUITES)} suites pass")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
