#!/usr/bin/env bash
# The GPU checks in one prepared script, for a lent CUDA machine whose python3 already holds a CUDA torch:
# the README's tests (the CUDA ones included), the main job on CPU and on the GPU, and the edge circuit.
#
#   bash benchmarks/gpu.sh OUT_DIR        # ~6-8 min on one H100/H200 with 16 cores (planned, see below)
#
# Our runtime needs beyond that machine's image are carried as wheels in .whl/ (pydantic and
# pydantic-core are the only ones its image lacked when last listed); they are installed into /tmp/site.
# Each step writes its own log under OUT_DIR, and a step that fails does not stop the next one: the
# summary (OUT_DIR/summary.txt) lists each step's exit code and wall time.
set -uo pipefail
out="${1:?usage: bash benchmarks/gpu.sh OUT_DIR}"
mkdir -p "$out"
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1

step() {  # step NAME COMMAND...: run, log to OUT/NAME.log, record rc and seconds
  local name=$1; shift
  local t0=$SECONDS
  "$@" >"$out/$name.log" 2>&1
  local rc=$?
  printf '%-16s rc=%-3s %5d s  %s\n' "$name" "$rc" "$((SECONDS - t0))" "$*" | tee -a "$out/summary.txt"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, platform; print('torch', torch.__version__, 'cuda', torch.version.cuda, platform.processor())"
  lscpu | grep -E 'Model name|Flags' | cut -c1-400; } >"$out/machine.txt" 2>&1

# 1. The README's test command (one process per core); tests/test_device.py runs only where CUDA is.
step tests python3 -m pytest -n 8 --dist loadfile -p no:cacheprovider
step cuda_tests python3 -m pytest tests/test_device.py -v -p no:cacheprovider
# 2. The main job, on the GPU and on the machine's CPU (a second CPU family for the float references too).
step analyze_cuda python3 -m arithlens.cli analyze --device cuda --out "$out/analyze_cuda"
step analyze_cpu python3 -m arithlens.cli analyze --device cpu --threads 2 --out "$out/analyze_cpu"
# 3. The same verdicts on both devices: every JSON compared with the test suite's tolerances.
step compare python3 - "$out/analyze_cuda" "$out/analyze_cpu" <<'EOF'
import json, sys
from pathlib import Path
sys.path.insert(0, "tests")
from helpers import assert_json_close
a, b = map(Path, sys.argv[1:3])
for f in sorted(a.rglob("*.json")):
    if f.name == "timings.json":
        continue
    assert_json_close(json.loads(f.read_text()), json.loads((b / f.relative_to(a)).read_text()))
    print("same within tolerance:", f.relative_to(a))
EOF
cat "$out/summary.txt"
