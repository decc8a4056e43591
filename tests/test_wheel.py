"""The package as a user gets it: a wheel installed into a fresh venv works from outside the checkout.

Runs ``benchmarks/check_wheel.py`` (build, listing, fresh venv, CLI, one-trial search, dashboard data);
about 20 s on two shared cores, most of it the one-trial search.
"""

import subprocess
import sys
from pathlib import Path

CHECK = Path(__file__).resolve().parent.parent / "benchmarks" / "check_wheel.py"


def test_the_wheel_installs_into_a_fresh_venv_and_runs_a_search_from_outside_the_checkout(tmp_path):
    result = subprocess.run([sys.executable, str(CHECK)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "has spaces/mobilenetv1.yaml, spaces/mobilenetv2.yaml" in out and "ui/app.py" in out
    assert "/venv/lib/" in out.split("mobilenet_search imported from ", 1)[1].splitlines()[0]
    assert "load_study_data(fast=True): wheel-check, 1 trial, source sql" in out
    assert "load_study_data(fast=False): wheel-check, 1 trial, source optuna" in out
    assert "wheel check passed" in out
