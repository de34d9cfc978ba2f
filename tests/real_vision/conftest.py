"""tests/real_vision runs in .venv-vision (tools/test.sh): timm and torchscale import torchvision,
whose PyPI build does not load beside the CPU torch of .venv, so this folder has its own venv with
torch 2.14.1 and torchvision 0.29.1 (tools/vision-requirements.txt). The main run passes
``--ignore=tests/real_vision``; run anywhere else, each module skips with the reason.

The tests' shared helpers (``reference_tables``, ``test_structure_torch.name_blind``) live in
tests/, which is put on the import path here."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def import_or_skip(name: str):
    """``name`` imported, or the calling test module skipped with why: absent, or (timm,
    torchscale) present but its torchvision does not load beside this torch."""
    import importlib

    try:
        with warnings.catch_warnings():
            # torchscale 0.3.0 imports drop_path from timm.models.layers, deprecated in timm 1.x.
            warnings.filterwarnings("ignore", "Importing from timm.models.layers", FutureWarning)
            return importlib.import_module(name)
    except (ImportError, RuntimeError) as error:
        pytest.skip(
            f"{name} cannot be imported here ({type(error).__name__}: {error}); tests/real_vision runs in "
            ".venv-vision, built by tools/test.sh",
            allow_module_level=True,
        )
