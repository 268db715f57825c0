#!/usr/bin/env bash
# Run the chd68 real-data benchmark and record the command and hardware next to its results.
#
#   bash benchmarks/run_chd68.sh OUTPUT_DIR
#
# The data root defaults to ../shared/data/chd68-slices beside the checkout; set KDBENCH_DATA_ROOT
# to use another copy. Rerunning resumes: finished cells are kept.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:?usage: run_chd68.sh OUTPUT_DIR}"
export KDBENCH_DATA_ROOT="${KDBENCH_DATA_ROOT:-$here/../shared/data/chd68-slices}"

start=$(date +%s)
kdbench run "$here/benchmarks/chd68.toml" --output "$out"
seconds=$(( $(date +%s) - start ))

python - "$out" "$seconds" <<'PY'
import json, os, platform, sys
import torch
out, seconds = sys.argv[1], int(sys.argv[2])
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
           platform.processor())
record = {
    "command": "bash benchmarks/run_chd68.sh " + out,
    "matrix": "benchmarks/chd68.toml",
    "wall_seconds_this_invocation": seconds,
    "cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
}
with open(os.path.join(out, "provenance.json"), "w") as fh:
    json.dump(record, fh, indent=2)
print(f"chd68 benchmark: {seconds} s wall on {cpu} ({os.cpu_count()} cores)")
PY
