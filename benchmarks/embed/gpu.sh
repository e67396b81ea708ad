#!/usr/bin/env bash
# The model benchmark on a machine with an NVIDIA GPU and no network (the
# device machines): everything arrives prepared, nothing is installed.
#
#   bash benchmarks/embed/gpu.sh SLUICE_BIN ORT_GPU_CAPI_DIR MODELS_DIR [WHEELS_DIR]
#
# ORT_GPU_CAPI_DIR holds libonnxruntime.so.1.31.1 and
# libonnxruntime_providers_{shared,cuda}.so from the onnxruntime-gpu==1.31.1
# wheel (built for CUDA 13 + cuDNN 9); MODELS_DIR holds models/minilm and
# test-models/linear.onnx as scripts/install-models.sh lays them out. The
# CUDA libraries come from the machine's Python `nvidia-*` packages. The peer
# is the machine's own Python onnxruntime (CPU) at the same thread count.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$1 CAPI=$2 MODELS=$3 WHEELS=${4:-}
HOME_DIR=$(mktemp -d /tmp/sluice-gpu-home.XXXXXX)
mkdir -p "$HOME_DIR/lib"
cp "$CAPI"/libonnxruntime* "$HOME_DIR/lib/"
ln -sf libonnxruntime.so.1.31.1 "$HOME_DIR/lib/libonnxruntime.so"
cp -r "$MODELS"/models "$MODELS"/test-models "$HOME_DIR/"
if [[ -n "$WHEELS" ]]; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/sluice-gpu-site "$WHEELS"/*.whl
  export PYTHONPATH=/tmp/sluice-gpu-site${PYTHONPATH:+:$PYTHONPATH}
fi
LD_LIBRARY_PATH=$(python3 - <<'PY'
import glob, os, nvidia
dirs = {os.path.dirname(p) for d in nvidia.__path__ for p in glob.glob(d + "/*/lib/*.so*")}
print(":".join(sorted(dirs)))
PY
)
export LD_LIBRARY_PATH SLUICE_HOME=$HOME_DIR
THREADS=${THREADS:-$(nproc)}
data=$(mktemp -d /tmp/sluice-gpu-data.XXXXXX)
RUST_LOG=${RUST_LOG:-info} "$BIN" serve --listen 127.0.0.1:5440 --data-dir "$data" >"${LOG:-/tmp/sluice-gpu.log}" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do python3 -c "import psycopg; psycopg.connect('host=127.0.0.1 port=5440 user=x dbname=sluice')" 2>/dev/null && break; sleep 0.2; done
python3 - <<'PY'
import psycopg
with psycopg.connect("host=127.0.0.1 port=5440 user=x dbname=sluice", autocommit=True) as c:
    c.execute("SELECT vector_dims(EMBED('minilm', 'warm up'))")
    for k, v in c.execute("DESCRIBE MODEL minilm").fetchall():
        if k.startswith("device"):
            print(f"minilm {k}: {v}")
PY
python3 benchmarks/embed/bench.py --port 5440 --sluice-home "$HOME_DIR" --threads "$THREADS" \
  --rows "${ROWS:-10000}" --rows-per-row "${ROWS_PER_ROW:-2000}" --tabular-rows "${TABULAR_ROWS:-1000000}" --repeats "${REPEATS:-3}"
