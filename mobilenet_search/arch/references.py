"""The papers' hand-scaled networks: MobileNetV2 and MobileNetV1 across width and resolution.

These are the reference points a search has to beat (Sandler et al. 2018, Fig. 5 and
Table 6 sweep widths 0.35-1.4 and resolutions 96-224; Howard et al. 2017, Tables 6-7,
widths 0.25-1.0 and resolutions 128-224).
"""

from __future__ import annotations

from mobilenet_search.arch.spec import ArchSpec

V2_WIDTHS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
V2_RESOLUTIONS = (96, 128, 160, 192, 224)
V1_WIDTHS = (0.25, 0.5, 0.75, 1.0)
V1_RESOLUTIONS = (128, 160, 192, 224)


def reference_name(spec: ArchSpec) -> str:
    """The conventional name of a paper network, e.g. ``mobilenet_v2_0.75_160``."""
    width = f"{spec.width_mult:g}"
    return f"{spec.family}_{width if '.' in width else width + '.0'}_{spec.resolution}"


def paper_family(family: str = "mobilenet_v2", num_classes: int = 1000, in_channels: int = 3) -> dict[str, ArchSpec]:
    """Every width x resolution network of the family's paper, by name, cheapest width first.

    >>> list(paper_family("mobilenet_v1"))[:2]
    ['mobilenet_v1_0.25_128', 'mobilenet_v1_0.25_160']
    """
    if family == "mobilenet_v2":
        make, widths, resolutions = ArchSpec.mobilenet_v2, V2_WIDTHS, V2_RESOLUTIONS
    else:
        make, widths, resolutions = ArchSpec.mobilenet_v1, V1_WIDTHS, V1_RESOLUTIONS
    specs = (make(w, r, num_classes, in_channels=in_channels) for w in widths for r in resolutions)
    return {reference_name(spec): spec for spec in specs}


def spread(items: list, count: int) -> list:
    """At most ``count`` items evenly spread over ``items`` (which is sorted), ends included.

    >>> spread(list(range(10)), 4)
    [0, 3, 6, 9]
    """
    if len(items) <= count:
        return list(items)
    if count == 1:
        return [items[-1]]
    picks = sorted({round(i * (len(items) - 1) / (count - 1)) for i in range(count)})
    return [items[i] for i in picks]
