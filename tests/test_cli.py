"""The command line: describe, space, references, and clean errors (cli.py)."""

import subprocess
import sys

import pytest

from mobilenet_search import ArchSpec, count_madds
from mobilenet_search.ui.cli import main


def test_describe_prints_the_stage_table_and_totals(capsys):
    assert main(["describe", "v2", "--width", "0.75", "--resolution", "160"]) == 0
    out = capsys.readouterr().out
    spec = ArchSpec.mobilenet_v2(0.75, 160)
    assert out.splitlines()[0] == spec.to_string()
    assert f"{count_madds(spec):,}" in out and "stage7" in out and "107.3M MAdds, 2.64M parameters" in out


def test_describe_accepts_an_architecture_string(capsys):
    spec = ArchSpec.mobilenet_v1(0.5, 160, num_classes=10)
    assert main(["describe", spec.to_string()]) == 0
    assert f"{count_madds(spec):,}" in capsys.readouterr().out


def test_space_and_references(capsys):
    assert main(["space", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "192 members" in out and "cheapest by MAdds" in out and "most expensive by MAdds" in out
    assert main(["references"]) == 0
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["mobilenet_v2_1.0_224"] == ["300.8M", "3.50M"]  # Sandler et al. 2018: 300M, 3.4M
    assert rows["mobilenet_v1_1.0_224"] == ["568.7M", "4.23M"]  # Howard et al. 2017: 569M, 4.2M
    assert len(rows) == 6 * 5 + 4 * 4


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["describe", "not-an-arch"], "invalid architecture string 'not-an-arch'"),
        (["describe", "v2", "--width", "-1"], "argument --width: invalid value '-1': expected a number in (0, 10]"),
        (["describe", "v2", "--resolution", "16"], "invalid resolution=16"),
        (["space", "nope"], "unknown search space 'nope'"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(argv, message):
    result = subprocess.run([sys.executable, "-m", "mobilenet_search.ui.cli", *argv], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr and "Traceback" not in result.stderr
