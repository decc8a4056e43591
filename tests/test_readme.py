"""The README's commands and examples are the ones that work (README.md, .ci/run, docs/python-api.md)."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
PYTHON_API = (ROOT / "docs" / "python-api.md").read_text()


def _blocks(language: str, text: str = README) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def _run(example: str) -> str:
    result = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_ci_runs_exactly_the_quick_start_commands():
    install, test = (block.strip() for block in _blocks("bash")[:2])
    ci_lines = [line for line in (ROOT / ".ci/run").read_text().splitlines() if line and not line.startswith("#")]
    assert install in ci_lines and test in ci_lines
    assert ci_lines.index(install) < ci_lines.index(test)


def test_python_api_example_runs_as_written():
    example = next(block for block in _blocks("python", PYTHON_API) if "build_model" in block)
    assert _run(example).startswith("mnv2_w0.5_r150_")


def test_the_readme_python_example_runs_as_written():
    (example,) = _blocks("python")
    madds, name = _run(example).split()
    assert int(madds) > 0 and name.startswith("mnv2_w0.75_r160_")


def test_the_example_output_comes_from_the_quick_start_command():
    install = _blocks("bash")[0].strip()
    quick_start = install.rsplit("&& .venv/bin/", 1)[1]  # mobilenet-search --budget 300M-madds
    examples = [block for block in _blocks("text") if block.startswith("$ ") and "Pareto-optimal" in block]
    assert examples, "the README shows the quick start's output, starting with its command line"
    assert examples[0].splitlines()[0] == f"$ {quick_start}"
