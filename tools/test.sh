#!/usr/bin/env bash
# Install everything into fresh virtual environments and run the whole test suite:
#   .venv        torch, Keras 3 (TensorFlow), JAX + Flax, the test tools  -> tests/ and conformance/
#   .venv-mxnet  the real MXNet 1.9.1, which needs numpy 1.23.5           -> tests/real_mxnet/
#   .venv-vision torch 2.14.1 + torchvision 0.29.1, timm, torchscale       -> tests/real_vision/
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=2 PIP_DISABLE_PIP_VERSION_CHECK=1
PYTHON=${PYTHON:-python3}

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install -q -c constraints.txt -e '.[all,test]'
# mup (the muP reference the modern-scheme tests check against) declares torchvision, whose PyPI
# build does not load beside this torch and breaks transformers' imports; mup itself needs only
# torch and pyyaml, so it is installed without its declared dependencies.
.venv/bin/pip install -q --no-deps mup==1.0.0
# Reference codebases the structure, identity and modern-scheme tests build models from (from
# configs, never downloaded). Several declare dependencies that would replace torch, numpy or
# transformers' huggingface_hub (torchvision, tensorflow), so they are
# installed pinned and without their declared dependencies, plus the few modules they import.
.venv/bin/pip install -q -c constraints.txt -r tools/reference-codebases.txt
.venv/bin/pip install -q --no-deps -r tools/reference-codebases-nodeps.txt

[ -x .venv-mxnet/bin/python ] || "$PYTHON" -m venv .venv-mxnet
.venv-mxnet/bin/pip install -q mxnet==1.9.1 numpy==1.23.5 'pytest>=8' 'hypothesis>=6' scipy
.venv-mxnet/bin/pip install -q --no-deps -e .

# timm and torchscale import torchvision, whose PyPI build does not load beside .venv's CPU torch:
# their own venv, with torch 2.14.1 and torchvision 0.29.1 (on this machine's pip disk, Python 3.11).
[ -x .venv-vision/bin/python ] || "$PYTHON" -m venv .venv-vision
.venv-vision/bin/pip install -q -r tools/vision-requirements.txt
.venv-vision/bin/pip install -q --no-deps -r tools/vision-requirements-nodeps.txt
.venv-vision/bin/pip install -q --no-deps -e .

# Lint and types first: ruff over the repository, mypy and the public-types check over polyinit/.
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python tools/check_public_types.py

# The documentation site builds with no warning (a broken reference fails); its examples run in tests/test_docs.py.
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir "$(mktemp -d)"

# Every backend is required here: one that cannot be imported fails the run instead of skipping.
POLYINIT_TEST_BACKENDS=numpy,torch,keras,jax,mxnet .venv/bin/python -m pytest -n 2 --dist loadgroup --ignore=tests/real_mxnet --ignore=tests/real_vision "$@"
POLYINIT_TEST_BACKENDS=numpy,mxnet .venv-mxnet/bin/python -m pytest -p no:cacheprovider tests/real_mxnet "$@"
POLYINIT_TEST_BACKENDS=numpy,torch .venv-vision/bin/python -m pytest -p no:cacheprovider tests/real_vision "$@"
# MXNet's default layout through Gluon itself (conformance/test_default_layouts.py, issue 26.3)
POLYINIT_TEST_BACKENDS=numpy,mxnet .venv-mxnet/bin/python -m pytest -p no:cacheprovider conformance/test_default_layouts.py "$@"
