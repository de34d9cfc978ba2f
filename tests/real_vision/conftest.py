"""tests/real_vision runs in .venv-vision (tools/test.sh): timm and torchscale import torchvision,
whose PyPI build does not load beside the CPU torch of .venv, so this folder has its own venv with
torch 2.14.1 and torchvision 0.29.1 (tools/vision-requirements.txt). The main run passes
``--ignore=tests/real_vision``; run anywhere else, each module skips with the reason.

The tests' shared helpers (``reference_tables``, ``test_structure_torch.name_blind``) live in
tests/, which is put on the import path here."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
