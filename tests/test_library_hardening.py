"""The model library refuses what it cannot hold and shows what it cannot read (issue 24, items 3 and 7)."""

from __future__ import annotations

import json
import os

import pytest

from mobilenet_search import ArchSpec, build_model, library
from mobilenet_search.errors import UserError
from mobilenet_search.ui.cli import main

SMALL = ArchSpec.mobilenet_v2(0.5, 64, num_classes=3, stages=((1, 16, 1, 1), (6, 24, 2, 2)))


@pytest.mark.parametrize("name", ["MOBILENET_V2_1.0_224", "Mobilenet_V2_0.35_96", "MobileNet_V1_1.0_224"])
def test_a_name_equal_to_a_builtin_but_for_case_is_refused(tmp_path, name):
    with pytest.raises(UserError, match=f"entry name '{name}' is the built-in 'mobilenet_v.*' but for case"):
        library.save(name, SMALL, library=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("name", "bare"), [("x.json", "x"), ("net.safetensors", "net"), ("A.JSON", "A")])
def test_a_name_with_the_files_suffix_is_refused(tmp_path, name, bare):
    with pytest.raises(UserError, match=f"ends in .*give the name alone \\('{bare}'\\)"):
        library.save(name, SMALL, library=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("metadata", "problem"), [
    ({"metrics": {"accuracy": {"v": 1}}}, "metadata.metrics.accuracy must be a number"),
    ({"metrics": {"accuracy": "0.5"}}, "metadata.metrics.accuracy must be a number"),
    ({"metrics": {"latency_ms": [1, 2]}}, "metadata.metrics.latency_ms must be a number"),
    ({"metrics": "fast"}, "metadata.metrics must be a JSON object"),
    ({"metrics": {"accuracy": True}}, "metadata.metrics.accuracy must be a number"),
    ({"source": ["x"]}, "metadata.source must be a JSON object"),
    ({"study_config": {"budget": "300M-madds", "epochs": "eight"}}, "metadata.study_config is not a study's settings"),
    ({"study_config": {"epochs": 8}}, "metadata.study_config is not a study's settings"),  # no budget
])
def test_a_broken_entry_is_listed_as_broken_with_its_file_and_the_good_ones_still_show(tmp_path, capsys, metadata,
                                                                                        problem):
    library.save("good", SMALL, {"metrics": {"accuracy": 0.5}}, library=tmp_path)
    library.save("bad", SMALL, library=tmp_path)
    document = json.loads((tmp_path / "bad.json").read_text())
    document["metadata"] = metadata
    (tmp_path / "bad.json").write_text(json.dumps(document))
    assert main(["library", "list", "--library", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    good = next(line for line in out.splitlines() if line.startswith("good "))
    assert "0.5000" in good and "saved by hand" in good
    bad = next(line for line in out.splitlines() if line.startswith("bad "))
    assert "unreadable" in bad and str(tmp_path / "bad.json") in bad and problem in bad
    assert main(["library", "show", "bad", "--library", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "bad.json") in err and problem in err


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_weights_files_follow_the_umask_like_every_other_file(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        library.save("net", SMALL, library=tmp_path, weights=build_model(SMALL))
    finally:
        os.umask(old)
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == {"net.json": mode,
                                                                             "net.safetensors": mode}


@pytest.mark.parametrize("command", [["library", "list"], ["library", "show", "mobilenet_v2_1.0_224"]])
def test_a_file_given_as_the_library_is_refused(tmp_path, capsys, command):
    (tmp_path / "lib").write_text("a file")
    assert main([*command, "--library", str(tmp_path / "lib")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "it is a file, not a folder" in err


def test_show_and_build_say_the_weights_file_is_missing(tmp_path, capsys):
    library.save("net", SMALL, library=tmp_path, weights=build_model(SMALL))
    (tmp_path / "net.safetensors").unlink()
    assert main(["library", "show", "net", "--library", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"weights: missing: the entry records {tmp_path / 'net.safetensors'}, which does not exist" in out
    with pytest.raises(UserError, match="cannot read the weights of library entry 'net'") as caught:
        library.build("net", library=tmp_path, weights="trained")
    assert "do not fit" not in str(caught.value)
