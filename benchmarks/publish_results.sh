#!/usr/bin/env bash
# Copy the publishable part of a results folder into the repository and refresh its baseline.
#
#   bash benchmarks/publish_results.sh /tmp/chd68 results/chd68
#
# Copies cell JSON files, predictions, split and provenance (not checkpoints or ONNX files, which
# are large and rebuilt by any run), rebuilds leaderboards and plots from the cells with
# `kdbench report`, and writes DEST/baseline.json with `kdbench check --update-baseline`.
set -euo pipefail
src="${1:?usage: publish_results.sh SOURCE_RESULTS DEST}"
dest="${2:?usage: publish_results.sh SOURCE_RESULTS DEST}"

rm -rf "$dest"
mkdir -p "$dest"
cp -r "$src/cells" "$src/predictions" "$src/split.json" "$src/matrix.json" \
    "$src/overlay_inputs.npz" "$src/provenance.json" "$dest/"
python - "$dest/provenance.json" "$src" "$dest" <<'PY'
import json, sys
path, src, dest = sys.argv[1:]
record = json.load(open(path))
record["published"] = f"bash benchmarks/publish_results.sh {src} {dest}"
record["left_out"] = "checkpoints/ and artifacts/ (student checkpoints and ONNX files)"
json.dump(record, open(path, "w"), indent=2)
PY
kdbench report "$dest"
kdbench check --baseline "$dest/baseline.json" --results "$dest" --update-baseline
