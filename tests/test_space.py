"""Search-space files: loading, validation errors, sampling, extremes (space.py)."""

import optuna
import pytest

from mobilenet_search import ArchSpec, UserError, count_madds, count_params
from mobilenet_search.arch.references import paper_family
from mobilenet_search.search.space import available_spaces, load_space, parse_space

MINIMAL = {
    "family": "mobilenet_v2",
    "width_mult": [0.5, 1.0],
    "stages": [{"expansion": [1, 6], "channels": 16, "repeats": [1, 2], "stride": 1}],
}


def test_shipped_spaces_load_and_cover_the_papers_ranges():
    assert {"mobilenetv2", "mobilenetv1", "tiny"} <= set(available_spaces())
    v2 = load_space("mobilenetv2")
    assert v2.parameters["width_mult"] == (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)  # Sandler et al. 2018, Sec. 6.1
    assert v2.parameters["resolution"] == (96, 128, 160, 192, 224)
    # Ablations are off by default: fixed to the paper's choices.
    assert v2.parameters["activation"] == ("relu6",) and v2.parameters["linear_bottleneck"] == (True,)
    assert load_space("mobilenetv1").family == "mobilenet_v1"


@pytest.mark.parametrize("family", ["mobilenet_v2", "mobilenet_v1"])
def test_the_papers_networks_are_members_of_the_default_spaces(family):
    space = load_space("mobilenetv2" if family == "mobilenet_v2" else "mobilenetv1")
    for name, spec in paper_family(family).items():
        if spec.width_mult in space.parameters["width_mult"] and spec.resolution in space.parameters["resolution"]:
            params = space.params_of(spec)
            assert params is not None, name
            assert space.spec(params) == spec


def test_params_of_rejects_what_the_space_cannot_express():
    space = load_space("mobilenetv2")
    assert space.params_of(ArchSpec.mobilenet_v2(0.6, 224)) is None
    assert space.params_of(ArchSpec.mobilenet_v2(activation="relu")) is None


def test_size_counts_every_assignment():
    space = parse_space(MINIMAL)
    assert space.size == 2 * 2 * 2 == len(list(space.members()))
    assert set(space.searched) == {"width_mult", "stage1.expansion", "stage1.repeats"}


@pytest.mark.parametrize("name", ["tiny", "mobilenetv2_ablations"])
def test_extremes_match_brute_force(name):
    space = load_space(name)
    specs = [space.spec(p) for p in space.members()]
    for cost in (count_madds, count_params):
        assert cost(space.extreme(cost)) == min(map(cost, specs))
        assert cost(space.extreme(cost, largest=True)) == max(map(cost, specs))


def test_sampling_through_optuna_stays_inside_the_space():
    space = load_space("mobilenetv2")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        spec = space.sample(trial, num_classes=10, in_channels=1)
        assert space.params_of(spec) == trial.params
        assert spec.num_classes == 10 and spec.in_channels == 1
        study.tell(trial, 0.0)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({**MINIMAL, "widht_mult": [1.0]}, "unknown key 'widht_mult'"),
        ({**MINIMAL, "family": "resnet"}, "family: 'resnet'"),
        ({**MINIMAL, "stages": []}, "stages: expected a non-empty list"),
        ({**MINIMAL, "width_mult": [0.5, -1.0]}, "width_mult: invalid width_mult=-1.0"),
        ({**MINIMAL, "resolution": 16}, "resolution: invalid resolution=16"),
        ({**MINIMAL, "stages": [{"expansion": 0, "channels": 8, "repeats": 1, "stride": 1}]},
         "stages[0].expansion: invalid expansion (t)=0"),
        ({**MINIMAL, "stages": [{"expansion": 1, "channels": 8, "repeats": 1, "stride": 3}]},
         "stages[0].stride: invalid stride (s)=3"),
        ({**MINIMAL, "stages": [{"expansion": 1, "channels": 8, "repeats": 1}]}, "missing key 'stride'"),
        ({**MINIMAL, "stages": [{"expansion": 1, "channels": "x", "repeats": 1, "stride": 1}]},
         "stages[0].channels: invalid channels (c)='x'"),
        ({**MINIMAL, "width_mult": []}, "width_mult: an empty list"),
        ({**MINIMAL, "width_mult": [1.0, 1.0]}, "width_mult: repeated choices"),
        ({**MINIMAL, "family": "mobilenet_v1"}, "stages[0].expansion: invalid stages[0].expansion (t)=6"),
        ([1, 2], "expected a mapping"),
    ],
)
def test_bad_spaces_name_the_key(data, message):
    with pytest.raises(UserError) as info:
        parse_space(data)
    assert message in str(info.value)


def test_bad_file_errors_name_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("family: mobilenet_v2\nstages: [\n")
    with pytest.raises(UserError, match="broken.yaml: not valid YAML"):
        load_space(path)
    path.write_text("family: mobilenet_v2\nresolution: 8\nstages: [{expansion: 1, channels: 8, repeats: 1, stride: 1}]")
    with pytest.raises(UserError, match=r"broken\.yaml: resolution: invalid resolution=8"):
        load_space(path)
    with pytest.raises(UserError, match="unknown search space 'nope'"):
        load_space("nope")
    with pytest.raises(UserError, match="does not exist"):
        load_space(tmp_path / "missing.yaml")
