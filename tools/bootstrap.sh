#!/usr/bin/env bash
# Create the virtualenv and install emproc with its test extras.
# On a fresh Debian machine, python3-venv may be missing: install it when we are root.
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}

if ! "$python" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
    echo "emproc needs Python >= 3.11 ($python is $("$python" --version 2>&1))" >&2
    exit 1
fi
if ! "$python" -m venv --help >/dev/null 2>&1 || ! "$python" -c 'import ensurepip' 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
    else
        echo "python3-venv is missing: sudo apt-get install python3-venv" >&2
        exit 1
    fi
fi
# RELION (2D/3D backend, STAR checks) and Chromium (report rendering) are real dependencies
# of the tests and the workflow: Debian packages, installed here so a fresh clone has them.
missing=()
command -v relion_refine >/dev/null || missing+=(relion)
# the 3D steps run relion_refine_mpi under mpirun (RELION 3.1 auto-refine needs MPI)
command -v mpirun >/dev/null || missing+=(openmpi-bin)
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "emproc needs Debian packages: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -e '.[test,cluster]'
