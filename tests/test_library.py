"""The model library: built-in entries, save/load/build, names, overwrites, atomic writes (library.py)."""

import json
import os

import pytest
import torch
import torchvision

from mobilenet_search import ArchSpec, UserError, build_model, count_madds, count_params, files, library
from mobilenet_search.arch.references import paper_family

SMALL = ArchSpec.mobilenet_v2(0.5, 64, num_classes=3, stages=((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2)))


def test_builtins_are_the_papers_networks_with_the_cost_models_costs():
    names = library.list(library="/nonexistent")
    assert names == [*paper_family("mobilenet_v2"), "mobilenet_v1_1.0_224"]
    for name in names:
        entry = library.get(name)
        assert entry.builtin and entry.path is None
        assert entry.metadata["metrics"] == {"madds": count_madds(entry.spec), "params": count_params(entry.spec)}
    assert library.load("mobilenet_v2_1.0_224") == ArchSpec.mobilenet_v2()
    assert library.load("mobilenet_v2_0.35_96") == ArchSpec.mobilenet_v2(0.35, 96)
    assert library.load("mobilenet_v1_1.0_224") == ArchSpec.mobilenet_v1()
    # Sandler et al. 2018 Table 6 (300M, 3.4M) and Howard et al. 2017 Table 8 (569M, 4.2M), exact counts.
    assert library.get("mobilenet_v2_1.0_224").metadata["metrics"] == {"madds": 300_774_272, "params": 3_504_872}
    assert library.get("mobilenet_v1_1.0_224").metadata["metrics"] == {"madds": 568_740_352, "params": 4_231_976}


def test_build_a_builtin_with_other_classes_runs_a_forward_pass():
    model = library.build("mobilenet_v2_0.35_96", num_classes=7).eval()
    assert sum(p.numel() for p in model.parameters()) == count_params(ArchSpec.mobilenet_v2(0.35, 96, 7))
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 96, 96)).shape == (2, 7)


def test_save_load_build_round_trip(tmp_path):
    path = library.save("tiny-net_v1.2", SMALL, {"source": {"note": "by hand"}, "metrics": {"accuracy": 0.5}},
                        library=tmp_path)
    assert path == tmp_path / "tiny-net_v1.2.json"
    data = json.loads(path.read_text())
    assert data["format_version"] == library.FORMAT_VERSION and data["name"] == "tiny-net_v1.2"
    assert ArchSpec.from_dict(data["spec"]) == SMALL
    assert data["torchvision"]["inverted_residual_setting"] == [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 2, 2]]
    entry = library.get("tiny-net_v1.2", library=tmp_path)
    assert (entry.spec, entry.metadata["metrics"], entry.builtin) == (SMALL, {"accuracy": 0.5}, False)
    assert library.list(library=tmp_path)[-1] == "tiny-net_v1.2"
    model = library.build("tiny-net_v1.2", library=tmp_path).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 3)


def test_the_environment_variable_chooses_the_directory_and_library_overrides_it(tmp_path, monkeypatch):
    monkeypatch.setenv(library.ENV_VAR, str(tmp_path / "env"))
    library.save("from-env", SMALL)
    assert (tmp_path / "env" / "from-env.json").is_file()
    assert library.load("from-env") == SMALL
    assert library.library_dir(tmp_path / "flag") == tmp_path / "flag"
    monkeypatch.delenv(library.ENV_VAR)
    assert library.library_dir() == library.DEFAULT_DIR and library.DEFAULT_DIR.name == "model_library"


@pytest.mark.parametrize("name", ["", "../evil", "a/b", "a\\b", "..", ".hidden", "a..b", "with space", "x" * 129,
                                  "/abs", "-flag", "é"])
def test_bad_names_are_refused_and_nothing_is_written(tmp_path, name):
    with pytest.raises(UserError, match="invalid entry name"):
        library.save(name, SMALL, library=tmp_path / "lib")
    with pytest.raises(UserError, match="invalid entry name"):
        library.load(name, library=tmp_path / "lib")
    assert not (tmp_path / "lib").exists() and sorted(os.listdir(tmp_path)) == []


def test_an_existing_entry_is_replaced_only_with_force(tmp_path):
    library.save("net", SMALL, library=tmp_path)
    other = SMALL.replace(width_mult=0.75)
    with pytest.raises(UserError, match="already exists.*--force"):
        library.save("net", other, library=tmp_path)
    assert library.load("net", library=tmp_path) == SMALL
    library.save("net", other, force=True, library=tmp_path)
    assert library.load("net", library=tmp_path) == other


def test_a_builtin_name_is_never_taken(tmp_path):
    with pytest.raises(UserError, match="is a built-in"):
        library.save("mobilenet_v2_1.0_224", SMALL, force=True, library=tmp_path)
    assert not list(tmp_path.iterdir())


def test_an_interrupted_save_leaves_the_old_entry_and_no_temporary_file(tmp_path, monkeypatch):
    library.save("net", SMALL, library=tmp_path)
    before = (tmp_path / "net.json").read_text()

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        library.save("net", SMALL.replace(width_mult=1.0), force=True, library=tmp_path)
    assert (tmp_path / "net.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.json"]


def test_metadata_that_is_not_json_is_refused_before_writing(tmp_path):
    with pytest.raises(ValueError):
        library.save("nan", SMALL, {"metrics": {"accuracy": float("nan")}}, library=tmp_path)
    with pytest.raises(TypeError):
        library.save("obj", SMALL, {"model": object()}, library=tmp_path)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "cannot be read"),
    ("[1, 2]", "not an entry"),
    ('{"format_version": 2, "spec": {}}', "format_version 2"),
    ('{"spec": {}}', "format_version None"),
    ('{"format_version": 1, "spec": {"family": "resnet"}}', "invalid family='resnet'"),
    ('{"format_version": 1, "spec": {"colour": 1}}', "unknown field"),
])
def test_a_malformed_entry_is_a_user_error_naming_the_file(tmp_path, content, message):
    (tmp_path / "bad.json").write_text(content)
    with pytest.raises(UserError, match=message) as info:
        library.load("bad", library=tmp_path)
    assert str(tmp_path / "bad.json") in str(info.value)


def test_a_missing_entry_is_a_user_error(tmp_path):
    library.save("present", SMALL, library=tmp_path)
    with pytest.raises(UserError, match="no library entry 'absent'.*present"):
        library.load("absent", library=tmp_path)


# -- torchvision interoperability ---------------------------------------------------------------

@pytest.mark.parametrize("spec", [
    ArchSpec.mobilenet_v2(0.5, 160, num_classes=10),
    ArchSpec.mobilenet_v2(1.4, 224),
    SMALL.replace(round_nearest=4, dropout=0.1, width_mult=0.3),
], ids=["v2-0.5", "v2-1.4", "custom-stages"])
def test_torchvision_builds_the_same_network_from_the_exported_kwargs(spec):
    ours = build_model(spec).eval()
    theirs = torchvision.models.MobileNetV2(**library.torchvision_kwargs(spec)).eval()
    assert sum(p.numel() for p in theirs.parameters()) == sum(p.numel() for p in ours.parameters()) \
        == count_params(spec)
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    assert {k: v.shape for k, v in theirs_state.items()} == {k: v.shape for k, v in ours_state.items()}
    ours.load_state_dict(theirs_state, strict=True)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))


@pytest.mark.parametrize("change", [dict(activation="relu"), dict(head="conv1x1"), dict(stem_channels=16),
                                    dict(head_channels=1024), dict(head_channels=None),
                                    dict(linear_bottleneck=False), dict(in_channels=1)])
def test_no_torchvision_kwargs_where_torchvision_cannot_build_it(change):
    assert library.torchvision_kwargs(ArchSpec.mobilenet_v2().replace(**change)) is None
    assert library.torchvision_kwargs(ArchSpec.mobilenet_v1()) is None


# -- trained weights ---------------------------------------------------------------------------------------

def trained_small() -> torch.nn.Module:
    model = build_model(SMALL, seed=3)
    with torch.no_grad():  # BatchNorm statistics too: every tensor of the state dict must come back
        for buffer in model.buffers():
            if buffer.is_floating_point():
                buffer.add_(0.5)
    return model.eval()


def test_an_entry_with_weights_builds_the_saved_network_exactly(tmp_path):
    model = trained_small()
    library.save("net", SMALL, {"weights_source": "trained"}, library=tmp_path, weights=model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.json", "net.safetensors"]
    entry = library.get("net", library=tmp_path)
    assert entry.has_weights and entry.weights_path == tmp_path / "net.safetensors"
    document = json.loads((tmp_path / "net.json").read_text())
    assert document["weights"]["file"] == "net.safetensors" and len(document["weights"]["sha256"]) == 64
    built = library.build("net", library=tmp_path, weights="trained")
    assert not built.training
    for key, value in model.state_dict().items():
        torch.testing.assert_close(built.state_dict()[key], value, rtol=0, atol=0)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(built(x), model(x))
    fresh = library.build("net", library=tmp_path)  # weights=None: freshly initialised, as before
    assert not torch.equal(fresh.classifier[-1].weight, model.classifier[-1].weight)
    assert library.load("net", library=tmp_path) == SMALL and "net" in library.list(library=tmp_path)


@pytest.mark.parametrize(("name", "kwargs", "message"), [
    ("net", dict(weights="imagenet"), "invalid weights 'imagenet': expected None .* or 'trained'"),
    ("net", dict(weights="trained", num_classes=10), "has trained weights for 3 classes, not 10"),
    ("plain", dict(weights="trained"), "library entry 'plain' has no trained weights"),
    ("mobilenet_v2_1.0_224", dict(weights="trained"), "has no trained weights \\(a built-in"),
])
def test_asking_for_weights_an_entry_cannot_give_is_one_user_error(tmp_path, name, kwargs, message):
    library.save("net", SMALL, library=tmp_path, weights=trained_small())
    library.save("plain", SMALL, library=tmp_path)
    with pytest.raises(UserError, match=message) as info:
        library.build(name, library=tmp_path, **kwargs)
    assert "\n" not in str(info.value)


def test_weights_that_are_not_the_entrys_are_refused(tmp_path):
    library.save("net", SMALL, library=tmp_path, weights=trained_small())
    other = build_model(SMALL.replace(width_mult=0.75))
    files.save_weights(other, tmp_path / "net.safetensors")  # replaced behind the entry's back
    with pytest.raises(UserError, match="are not the ones library entry 'net' was saved with"):
        library.build("net", library=tmp_path, weights="trained")
    (tmp_path / "net.safetensors").unlink()
    with pytest.raises(UserError, match="cannot read the weights of library entry 'net'"):
        library.build("net", library=tmp_path, weights="trained")


def test_weights_that_do_not_fit_the_spec_are_refused_before_writing(tmp_path):
    with pytest.raises(ValueError, match="weights do not fit"):
        library.save("net", SMALL, library=tmp_path, weights=build_model(SMALL.replace(width_mult=0.75)))
    assert not list(tmp_path.iterdir())


def test_replacing_an_entry_with_one_without_weights_removes_them(tmp_path):
    library.save("net", SMALL, library=tmp_path, weights=trained_small())
    library.save("net", SMALL, force=True, library=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.json"] and not library.get("net", library=tmp_path) \
        .has_weights


@pytest.mark.parametrize("weights", ["x", {"file": "other.safetensors", "sha256": "0"}, {"file": "w.safetensors"}])
def test_a_malformed_weights_record_is_a_user_error(tmp_path, weights):
    (tmp_path / "w.json").write_text(json.dumps({"format_version": 1, "spec": SMALL.to_dict(), "weights": weights}))
    with pytest.raises(UserError, match="weights must be an object with file 'w.safetensors'"):
        library.get("w", library=tmp_path)
