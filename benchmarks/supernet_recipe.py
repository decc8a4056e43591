"""Does the supernet learn? Its members, inherited, against the same nets trained alone.

Run from the repository root, one variant per call (each 2.5-4.5 minutes on 2 cores at 8 epochs)::

    python benchmarks/supernet_recipe.py --variant standalone      # the two nets trained alone, proxy schedule
    python benchmarks/supernet_recipe.py --variant labels          # sandwich, every member on the labels
    python benchmarks/supernet_recipe.py --variant distill         # sandwich + in-place distillation (BigNAS)
    python benchmarks/supernet_recipe.py --variant two-members     # largest + smallest only, on the labels
    python benchmarks/supernet_recipe.py --variant fixed-middle    # one fixed middle member as the "random" ones
    python benchmarks/supernet_recipe.py --variant zero-gamma      # the default: labels + residual blocks start as
                                                                   # the identity (BigNAS's zero-initialised BN)
    python benchmarks/supernet_recipe.py --variant four-random     # the default with four random members a step

On the embedded data at ``--proxy-size`` (32) for ``--epochs`` (8): a ``mobilenetv2`` supernet is trained with
:func:`train_supernet` and the recipe of the variant (the first five with every block initialised as torchvision
does), then scored with inherited weights (BatchNorm recalibrated on 512 training images, as a study scores them):
its largest and smallest members, the envelope at each middle width, and three middle members of the first
``bench_strategies.py`` study (0.754-0.762 after 10 epochs alone). ``standalone`` trains ``build_model`` of the largest
and smallest members with the proxy (:func:`train_and_evaluate`, same epochs). Prints each member's accuracy and
balanced accuracy, and the supernet's per-epoch loss. Majority-class accuracy is 0.688. ``fixed-middle`` trains
one member drawn with a fixed seed at every step in place of the random ones, then scores it inherited and trains
it alone: whether slicing a middle member is what keeps it untrained.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path

import torch

from mobilenet_search.arch.builder import build_model
from mobilenet_search.arch.spec import parse_arch
from mobilenet_search.arch.supernet import Supernet
from mobilenet_search.measure.data import load_dataset, proxy_resolution
from mobilenet_search.measure.supernet_train import SupernetConfig, calibration_indices, score_subnet, train_supernet
from mobilenet_search.measure.train import TrainConfig, train_and_evaluate
from mobilenet_search.search.space import load_space, supernet_envelope

# The variants before "zero-gamma" start every residual block as torchvision initialises it, as the default did then.
PLAIN = {"zero_init_residual": False}
RECIPES = {"labels": PLAIN, "distill": {**PLAIN, "distill": True}, "two-members": {**PLAIN, "random_subnets": 0},
           "fixed-middle": PLAIN, "zero-gamma": {}, "four-random": {"random_subnets": 4}}

# Middle members of bench_strategies.py's first supernet study: 0.754-0.762 after 10 epochs
# alone, 0.684-0.688 inherited from its supernet.
PANEL = ("mnv2_w1.0_r96_stem32_t1c16n1s1-t4c24n1s2-t3c24n2s2-t6c48n3s2-t4c112n2s1-t4c128n2s2-t3c256n1s1"
         "_head1280_relu6_linear_fc_drop0.2_cls2_in1_div8",
         "mnv2_w1.3_r96_stem32_t1c16n1s1-t4c16n1s2-t3c40n2s2-t6c48n4s2-t3c96n4s1-t4c160n4s2-t6c256n1s1"
         "_head1280_relu6_linear_fc_drop0.2_cls2_in1_div8",
         "mnv2_w1.0_r224_stem32_t1c16n1s1-t6c24n2s2-t4c32n3s2-t6c80n4s2-t4c96n3s1-t6c160n4s2-t6c320n1s1"
         "_head1280_relu6_linear_fc_drop0.2_cls2_in1_div8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=["standalone", *RECIPES], required=True)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--proxy-size", type=int, default=32)
    parser.add_argument("--cache-dir", type=Path, default=Path("results/cache"))
    args = parser.parse_args()

    data_for_size = functools.cache(lambda size: load_dataset("embedded", size, cache_dir=args.cache_dir))
    base = data_for_size(args.proxy_size)
    space = load_space("mobilenetv2")
    shape = dict(num_classes=base.num_classes, in_channels=base.in_channels)
    largest, smallest = supernet_envelope(space, **shape), space.extreme(**shape)

    def proxy_size(spec):
        return proxy_resolution(args.proxy_size, spec.resolution)

    started = time.perf_counter()
    print(f"{args.variant}, {args.epochs} epochs at proxy size {args.proxy_size}, {torch.get_num_threads()} threads")
    if args.variant == "standalone":
        for name, spec in (("largest", largest), ("smallest", smallest)):
            result = train_and_evaluate(build_model(spec, seed=0), data_for_size(proxy_size(spec)),
                                        TrainConfig(epochs=args.epochs))
            print(f"  {name:8} {spec.to_string()[:40]}: accuracy {result.accuracy:.3f}, "
                  f"balanced {result.balanced_accuracy:.3f}", flush=True)
    else:
        config = SupernetConfig(epochs=args.epochs, **RECIPES[args.variant])
        supernet = Supernet(largest, seed=0)

        def sample(generator: torch.Generator):
            return space.spec({name: values[int(torch.randint(len(values), (1,), generator=generator))]
                               for name, values in space.searched.items()}, **shape)

        members = [("largest", largest), ("smallest", smallest)]
        members += [(f"w{w}", largest.replace(width_mult=w)) for w in space.parameters["width_mult"][1:-1]]
        members += [(f"bench{i}", parse_arch(text)) for i, text in enumerate(PANEL)]
        if args.variant == "fixed-middle":
            middle = sample(torch.Generator().manual_seed(5))
            members.append(("middle", middle))
            print(f"  middle member: {middle.to_string()}")

            def sample(generator: torch.Generator):  # noqa: F811 -- the fixed member replaces the random ones
                return middle

        with tempfile.TemporaryDirectory() as folder:
            result = train_supernet(supernet, data_for_size, sample, smallest, largest, proxy_size, config,
                                    Path(folder) / "supernet.pt", args.variant)
        print(f"  loss of the largest member by epoch: {' '.join(f'{loss:.3f}' for loss in result.losses)}")
        for name, spec in members:
            data = data_for_size(proxy_size(spec))
            evaluation, _ = score_subnet(supernet, spec, data, calibration=calibration_indices(data, config.bn_images))
            print(f"  {name:8} {spec.to_string()[:40]}: accuracy {evaluation.accuracy:.3f}, "
                  f"balanced {evaluation.balanced_accuracy:.3f} (inherited)", flush=True)
        if args.variant == "fixed-middle":
            alone = train_and_evaluate(build_model(middle, seed=0), data_for_size(proxy_size(middle)),
                                       TrainConfig(epochs=args.epochs))
            print(f"  middle   trained alone: accuracy {alone.accuracy:.3f}, balanced {alone.balanced_accuracy:.3f}")
    print(f"  {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
