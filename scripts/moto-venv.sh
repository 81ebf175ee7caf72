#!/usr/bin/env bash
# Installs the Python test peers' packages from PyPI into a venv under
# ~/.cache/edgerec/moto-venv (EDGEREC_TOOLS overrides the directory), only when missing:
# moto's S3 server (the real S3-compatible peer of the upload tests, tests/peers/s3_server.py)
# and standardwebhooks (the reference Standard Webhooks verifier of
# tests/peers/webhook_receiver.py). Called by scripts/test-deps.sh.
set -euo pipefail

MOTO_VERSION=5.2.5
STANDARDWEBHOOKS_VERSION=1.0.0
tools=${EDGEREC_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/edgerec}
venv=$tools/moto-venv

have() {
  [ -x "$venv/bin/python3" ] &&
    "$venv/bin/python3" -c "import moto, flask, werkzeug; assert moto.__version__ == '$MOTO_VERSION'" 2>/dev/null &&
    "$venv/bin/python3" -c "import importlib.metadata as m; assert m.version('standardwebhooks') == '$STANDARDWEBHOOKS_VERSION'" 2>/dev/null
}
if ! have; then
  echo "moto-venv: installing moto[s3,server] $MOTO_VERSION and standardwebhooks $STANDARDWEBHOOKS_VERSION into $venv"
  mkdir -p "$tools"
  # The distribution's python: pyenv shims may point at a python without venv/ensurepip.
  py=/usr/bin/python3
  [ -x "$py" ] || py=python3
  [ -x "$venv/bin/pip" ] || "$py" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[s3,server]==$MOTO_VERSION" \
    "standardwebhooks==$STANDARDWEBHOOKS_VERSION"
  have || { echo "moto-venv: moto or standardwebhooks did not install" >&2; exit 1; }
fi
echo "moto-venv: ok"
