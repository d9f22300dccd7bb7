#!/usr/bin/env bash
# A package tree of another revision, for `python bench/run.py --base DIR`: the switchboard
# package as that revision had it (server/ as switchboard, schema/ as switchboard.schema), run
# beside this checkout's as switchboard-base, so both are measured side by side in one run.
#   bench/base_tree.sh REV DIR
set -euo pipefail
rev=${1:?revision}; dir=${2:?target folder}
root=$(cd "$(dirname "$0")/.." && pwd)
rm -rf "$dir" && mkdir -p "$dir/switchboard"
git -C "$root" archive "$rev" server | tar -x --strip-components=1 -C "$dir/switchboard"
mkdir -p "$dir/switchboard/schema"
git -C "$root" archive "$rev" schema | tar -x -C "$dir/switchboard/schema" --strip-components=1
echo "$dir holds switchboard at $(git -C "$root" rev-parse --short "$rev")"
