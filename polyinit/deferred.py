"""Deferred initialisation: materialise a torch model built on the meta device with rules.

A model too large to initialise twice is built on the meta device (``with torch.device("meta"):``),
where its parameters have shapes but no storage. ``materialize(model, rules, device=...)`` then
gives it storage and values one module at a time, through the one write path
(``polyinit.writing``): the arguments are validated and every plan is resolved and checked first
(a bad rule leaves the model on the meta device, untouched), then for each module in
registration order its own meta tensors get storage (``torch.empty_like`` on ``device``, what
``module.to_empty`` does, but tensor by tensor so that tied parameters stay tied: a tensor shared
by two modules is allocated once) and the rules draw straight into them. At no point is more than
one module's parameters allocated beyond what the model already holds, and the values are those
``apply`` gives the same model built normally (the same seed per parameter key; with
``portable=True`` the portable draw, as ``apply(..., portable=True)``).

What it refuses, before anything is materialised: a tensor a rule would draw that is not on the
meta device (materialize draws only meta tensors; ``apply`` the rest); a module with tensors the
rules do not draw and no ``reset_parameters()``; a module whose ``reset_parameters()`` would
overwrite a tensor already off the meta device; ``fans`` other than ``"native"``/``"semantic"``.

Tensors the rules do not draw (``KEEP``, unmatched parameters, buffers such as BatchNorm's
``num_batches_tracked``) get the module's own ``reset_parameters()``, as torch would have done at
construction. Floating ones are allocated filled with NaN first, so that one that
``reset_parameters()`` does not cover (a buffer computed in ``__init__``, such as rotary
frequencies) is found and refused instead of keeping whatever memory the allocator found; other
dtypes are allocated as zeros. All or nothing: any failure (a ``reset_parameters()`` raising
midway included) puts every module's meta tensors back and raises.

>>> # with torch.device("meta"): model = GPT(config)
>>> # report = materialize(model, Rules([...], seed=0), device="cpu")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from polyinit.errors import PolyinitError
from polyinit.params import ModelError, Param
from polyinit.rules import Report, Rules, _report, _seeds, check_rules, draws, plan_model


def _meta_tensors(module: Any) -> list[tuple[str, Any]]:
    own = list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False))
    return [(name, t) for name, t in own if t is not None and t.device.type == "meta"]


def _own_tensors(module: Any) -> list[tuple[str, Any]]:
    own = list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False))
    return [(name, t) for name, t in own if t is not None]


@dataclass
class _Step:
    """One module: its meta tensors' names, the parameters the rules draw among them, and whether
    its ``reset_parameters()`` must run for the rest."""

    prefix: str
    module: Any
    names: list[str]
    drawn: list[Param]
    reset: bool


def _plan_steps(model: Any, walker: Any, drawn: dict) -> list[_Step]:
    """The modules to materialise, refusing (before anything is allocated) a tensor that a rule
    draws but that is not on meta, and a module whose undrawn tensors nothing would initialise."""
    for path in drawn:
        tensor = walker.tensors[path]
        if tensor.device.type != "meta":
            raise ModelError(
                f"materialize: {path!r} is matched by a rule but is on {tensor.device}, not the meta "
                "device; materialize draws only meta tensors (apply() draws the others), so it would "
                "be reported drawn and left as it is: build it on meta or leave it out of the rules"
            )
    by_tensor = {id(walker.tensors[path]): path for path in drawn}
    steps = []
    for prefix, module in model.named_modules():
        meta = _meta_tensors(module)
        if not meta:
            continue
        where = f"{prefix}." if prefix else ""
        undrawn = [name for name, t in meta if id(t) not in by_tensor]
        if undrawn and not callable(getattr(module, "reset_parameters", None)):
            raise ModelError(
                f"materialize: {', '.join(where + n for n in undrawn)} would be left uninitialised: "
                f"no rule draws them and {type(module).__name__} has no reset_parameters(); "
                "add rules for them or build them off the meta device"
            )
        off_meta = [name for name, t in _own_tensors(module) if t.device.type != "meta"]
        if undrawn and off_meta:
            raise ModelError(
                f"materialize: {type(module).__name__} {prefix!r} is partly on the meta device "
                f"({', '.join(where + n for n in off_meta)} are not); its reset_parameters() would "
                f"overwrite them while initialising {', '.join(where + n for n in undrawn)}; "
                "build the whole module on meta, or add rules for its meta tensors"
            )
        steps.append(
            _Step(
                prefix,
                module,
                [name for name, _ in meta],
                [drawn[by_tensor[id(t)]][0] for _, t in meta if id(t) in by_tensor],
                bool(undrawn),
            )
        )
    return steps


def materialize(
    model: Any, rules: Rules, *, device: Any = "cpu", fans: Optional[str] = None, portable: bool = False
) -> Report:
    """Give every meta-device tensor of the torch ``model`` storage on ``device`` and values from
    ``rules``, module by module (see the module docstring); returns the rules' report, whose rows
    with a plan are exactly the tensors drawn. ``fans`` and ``portable`` as in ``apply``.

    >>> # with torch.device("meta"): model = torch.nn.Linear(4096, 4096)
    >>> # materialize(model, Rules([role("weight") >> pi.he_normal(), role("bias") >> pi.zeros()]))
    """
    import torch

    from polyinit import writing
    from polyinit.frameworks import walker_for

    check_rules("materialize", rules)
    portable = writing.check_portable_flag("materialize", portable)
    fans = writing.check_fans("materialize", fans, portable)
    if not isinstance(model, torch.nn.Module) or walker_for(model).name != "torch":
        raise ModelError(f"materialize: expected a torch nn.Module, received {type(model).__name__}")
    try:
        device = torch.device(device)
    except (TypeError, RuntimeError) as error:
        raise ModelError(f"materialize: device={device!r} is not a torch device ({error})") from None
    if device.type == "meta":
        raise ModelError("materialize: device='meta' would materialise nothing; pass the device to allocate on")
    walker = walker_for(model)
    params = walker.walk(model)
    planned = plan_model(params, rules, fans)
    seeds = _seeds(planned, rules)
    for param, _, plan in planned:
        if plan is not None:
            writing.check_torch_tensor(
                walker.tensors[param.path], param.path, "materialize", portable=portable, meta_ok=True
            )
    drawn = {
        param.path: (param, pending)
        for param, pending in draws(walker, planned, seeds, rules, portable, model)
        if pending is not None
    }
    steps = _plan_steps(model, walker, drawn)
    originals = [(step.module, name, getattr(step.module, name)) for step in steps for name in step.names]
    try:
        _run(steps, walker, model, drawn, device)
    except BaseException as error:
        for module, name, tensor in originals:  # back on the meta device, as it was
            setattr(module, name, tensor)
        if isinstance(error, PolyinitError) or not isinstance(error, Exception):
            raise
        raise ModelError(
            f"materialize: {type(error).__name__}: {error}; every module was put back on the meta device"
        ) from error
    return _report(planned, rules, fans, walker)


def _run(steps: list[_Step], walker: Any, model: Any, drawn: dict, device: Any) -> None:
    import torch

    done: dict[int, Any] = {}  # id of a meta tensor -> its materialised replacement
    written: set[str] = set()
    for step in steps:
        module = step.module
        for name in step.names:
            tensor = getattr(module, name)
            if id(tensor) not in done:
                done[id(tensor)] = _allocate(tensor, device, sentinel=step.reset)
            setattr(module, name, done[id(tensor)])  # Module.__setattr__ keeps params and buffers apart
        if step.reset:
            try:
                with torch.no_grad():
                    module.reset_parameters()
            except Exception as error:
                raise ModelError(
                    f"materialize: {type(module).__name__} {step.prefix!r}.reset_parameters() raised "
                    f"{type(error).__name__}: {error}; every module was put back on the meta "
                    "device"
                ) from error
        for param in step.drawn:
            if param.path in written:  # a tied tensor, already drawn through its first module
                continue
            # The walker's handle still points at the meta tensor: point it at the new storage.
            walker.tensors[param.path] = done[id(walker.tensors[param.path])]
            walker.write(model, [drawn[param.path]])
            written.add(param.path)
        _check_covered(step)


def _allocate(tensor: Any, device: Any, sentinel: bool) -> Any:
    """Storage on ``device`` for a meta tensor: empty when the rules draw all of the module's
    tensors; NaN (floating) or zeros (other dtypes) when ``reset_parameters()`` must fill some, so
    that none is left with uninitialised memory and an uncovered floating one can be found."""
    import torch

    if not sentinel:
        new = torch.empty_like(tensor, device=device)
    elif tensor.is_floating_point() or tensor.is_complex():
        new = torch.full_like(tensor, float("nan"), device=device)
    else:
        new = torch.zeros_like(tensor, device=device)
    if isinstance(tensor, torch.nn.Parameter):
        new = torch.nn.Parameter(new, requires_grad=tensor.requires_grad)
    return new


def _check_covered(step: _Step) -> None:
    """A floating tensor of the module still holding the NaN sentinel after ``reset_parameters()``
    and the draws was covered by neither: refuse it rather than leave NaN (or garbage) in the model."""
    if not step.reset:
        return
    import torch

    for name in step.names:
        tensor = getattr(step.module, name)
        if (tensor.is_floating_point() or tensor.is_complex()) and bool(torch.isnan(tensor).any()):
            where = f"{step.prefix}.{name}" if step.prefix else name
            raise ModelError(
                f"materialize: {where!r} is not initialised by {type(step.module).__name__}"
                ".reset_parameters() (a buffer computed in __init__?) and no rule draws it; add a "
                "rule for it or build it off the meta device"
            )
