#!/usr/bin/env bash
# mypy over the library as it is installed: emucamp with its card folders (emulators/,
# storage/, tasks/, flows/) as subpackages. mypy cannot follow setuptools' package-dir
# mapping of an editable install, so a tree of links lays the package out as installed.
set -euo pipefail
mypy=${1:-mypy}
# The check runs from the link tree: make a relative path to mypy absolute first.
case $mypy in */*) mypy="$(cd "$(dirname "$mypy")" && pwd)/$(basename "$mypy")" ;; esac
root=$(cd "$(dirname "$0")/.." && pwd)
tree="$root/build/typecheck"
rm -rf "$tree"
mkdir -p "$tree/emucamp"
for f in "$root"/emucamp/*.py "$root"/emucamp/py.typed; do ln -s "$f" "$tree/emucamp/"; done
for sub in emulators storage tasks flows; do ln -s "$root/$sub" "$tree/emucamp/$sub"; done
cd "$tree"
"$mypy" --config-file "$root/pyproject.toml" --cache-dir "$root/build/mypy-cache" -p emucamp
