# shellcheck shell=bash
# Sourced, not run, by every script that runs the project's Python or makes a venv:
#   . "$(dirname "$0")/lib.sh"          (from scripts/test.d/: "$(dirname "$0")/../lib.sh")
#
#   py FILE.py ARGS...           runs scripts/py/FILE.py with .venv's Python, from any directory.
#                                A file run this way has its own folder first on sys.path, so the
#                                files of scripts/py import each other with no sys.path edits.
#   venv_sync DIR REQUIREMENTS   makes the venv DIR if it is missing and installs REQUIREMENTS
#                                into it when they changed since the last install.
#   apt_install PACKAGE...       Debian packages, one script at a time: scripts/test sets up
#                                Docker and the browser in parallel, and two apt-get runs at once
#                                fail on dpkg's lock.
#
# `py` fails when .venv is missing instead of trying another Python: that one would lack moto,
# boto3 and cfn-lint, or parse mail with another version of `email` than the differential
# baseline records, and fail later and less clearly. venv_sync is the one place a Python outside
# a venv runs: $PYTHON, default python3.

mailroom_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

py() {
  local python="$mailroom_root/.venv/bin/python"
  if [ ! -x "$python" ]; then
    echo "$python is missing: run scripts/setup-venv (scripts/test does) first" >&2
    return 127
  fi
  "$python" "$mailroom_root/scripts/py/$1" "${@:2}"
}

apt_install() {
  echo "installing $* (apt)"
  (
    flock -w 900 9 || { echo "apt: waited 15 minutes for another install" >&2; exit 1; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  ) 9>"${TMPDIR:-/tmp}/mailroom-apt.lock"
}

venv_sync() {
  local dir=$1 requirements=$2 want
  if [ ! -x "$dir/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$dir"
  fi
  want=$(sha256sum "$requirements" | cut -d' ' -f1)
  if [ "$(cat "$dir/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    echo "$want" >"$dir/.requirements.sha256"
  fi
}
