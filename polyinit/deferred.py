"""Deferred initialisation: materialise a torch model built on the meta device with rules.

A model too large to initialise twice is built on the meta device (``with torch.device("meta"):``),
where its parameters have shapes but no storage. ``materialize(model, rules, device=...)`` then
gives it storage and values one module at a time: every plan is resolved and checked first (a
bad rule leaves the model on the meta device, untouched), then for each module in registration
order its own meta tensors get storage (``torch.empty_like`` on ``device``, what
``module.to_empty`` does, but tensor by tensor so that tied parameters stay tied: a tensor shared
by two modules is allocated once) and the rules draw straight into them. At no point is more than one module's parameters allocated beyond what the model
already holds, and the values are those ``apply`` gives the same model built normally (the same
seed per parameter key).

Tensors the rules do not draw (``KEEP``, unmatched parameters, buffers such as BatchNorm's
``num_batches_tracked``) get the module's own ``reset_parameters()``, as torch would have done at
construction; a module that has such tensors and no ``reset_parameters`` is refused before
anything is materialised, because its values would be whatever memory ``to_empty`` found.

>>> # with torch.device("meta"): model = GPT(config)
>>> # report = materialize(model, Rules([...], seed=0), device="cpu")
"""

from __future__ import annotations

from typing import Any

from polyinit.params import ModelError
from polyinit.rules import Report, Rules, _report, _seeds, plan_model


def _meta_tensors(module: Any) -> list[tuple[str, Any]]:
    own = list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False))
    return [(name, t) for name, t in own if t is not None and t.device.type == "meta"]


def materialize(model: Any, rules: Rules, *, device: Any = "cpu", fans: str = "native") -> Report:
    """Give every meta-device tensor of the torch ``model`` storage on ``device`` and values from
    ``rules``, module by module (see the module docstring); returns the rules' report."""
    import torch

    from polyinit.frameworks import walker_for

    if not isinstance(model, torch.nn.Module):
        raise ModelError(f"materialize: expected a torch nn.Module, received {type(model).__name__}")
    walker = walker_for(model)
    params = walker.walk(model)
    planned = plan_model(params, rules, fans)
    seeds = _seeds(planned, rules)
    drawn = {param.path: (plan, seed) for (param, _, plan), seed in zip(planned, seeds) if plan is not None}
    by_tensor = {id(walker.tensors[param.path]): param for param in params}
    steps = []
    for prefix, module in model.named_modules():
        meta = _meta_tensors(module)
        if not meta:
            continue
        undrawn = [name for name, t in meta
                   if id(t) not in by_tensor or by_tensor[id(t)].path not in drawn]
        if undrawn and not hasattr(module, "reset_parameters"):
            where = f"{prefix}." if prefix else ""
            raise ModelError(f"materialize: {', '.join(where + n for n in undrawn)} would be left uninitialised: "
                             f"no rule draws them and {type(module).__name__} has no reset_parameters(); "
                             "add rules for them or build them off the meta device")
        steps.append((module, [by_tensor[id(t)] for _, t in meta if id(t) in by_tensor
                               and by_tensor[id(t)].path in drawn], bool(undrawn)))
    device = torch.device(device)
    done: dict[int, Any] = {}  # id of a meta tensor -> its materialised replacement
    for module, own, reset in steps:
        for name, tensor in _meta_tensors(module):
            if id(tensor) not in done:
                new = torch.empty_like(tensor, device=device)
                if isinstance(tensor, torch.nn.Parameter):
                    new = torch.nn.Parameter(new, requires_grad=tensor.requires_grad)
                done[id(tensor)] = new
            setattr(module, name, done[id(tensor)])  # Module.__setattr__ keeps params and buffers apart
        if reset:
            with torch.no_grad():
                module.reset_parameters()
        for param in own:  # the walker's handles still point at the meta tensors
            walker.tensors[param.path] = getattr(module, param.path.rsplit(".", 1)[-1])
            walker.write(model, [(param, drawn[param.path])])
    return _report(planned, rules, fans, walker)
