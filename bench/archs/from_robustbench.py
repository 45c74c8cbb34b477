"""``robustbench:<dataset>:<threat model>:<model name>``: a RobustBench model-zoo
architecture, untrained (weights come from a local checkpoint through ``perbench
eval-model``; nothing is downloaded). Needs the ``perbench[robustbench]`` extra.

Zoo models take pixels in [0, 1] and normalise inside where they need to, as ours do.
"""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from bench.archs.base import ARCHS


def robustbench_factory(ref: str) -> Callable[..., nn.Module]:
    from bench.interop.autoattack_alias import import_robustbench

    dataset, threat, name = (ref.split(":") + ["", "", ""])[:3]
    if not (dataset and threat and name):
        raise ValueError(f"robustbench:{ref}: expected robustbench:<dataset>:<threat model>:"
                         "<model name>, e.g. robustbench:cifar10:Linf:Standard")
    import_robustbench()
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    try:
        models = model_dicts[BenchmarkDataset(dataset)][ThreatModel(threat)]
    except (ValueError, KeyError):
        raise ValueError(f"robustbench:{ref}: unknown dataset/threat model; datasets: "
                         f"{[d.value for d in model_dicts]}") from None
    if name not in models:
        raise ValueError(f"robustbench:{ref}: no model {name!r} in the zoo for {dataset} "
                         f"{threat}; e.g. {', '.join(sorted(models)[:5])}")

    def create(**_ignored) -> nn.Module:
        # the zoo fixes classes and input shape per dataset: the grid's data must match
        return models[name]["model"]()

    create.__doc__ = f"RobustBench zoo {dataset} {threat} {name} (untrained)"
    return create


ARCHS.register_prefix("robustbench", robustbench_factory)
