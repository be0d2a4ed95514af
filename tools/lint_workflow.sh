#!/usr/bin/env bash
# `snakemake --lint` on a tiny simulated session (linting needs a DAG to parse).
set -euo pipefail
bin=${1:-.venv/bin}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin/emproc" simulate spa "$work/session" --movies 1 --size 256 --frames 4 \
    --write-config "$work/config.yaml" >/dev/null
output=$("$bin/snakemake" --lint --configfile "$work/config.yaml" --cores 1 2>&1) || {
    echo "$output"; exit 1; }
if grep -q '^Lints for' <<<"$output" || ! grep -q 'Congratulations' <<<"$output"; then
    echo "snakemake --lint found problems:"; echo "$output"; exit 1
fi
echo "snakemake --lint: clean"
