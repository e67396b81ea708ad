#!/usr/bin/env bash
# Image decode + resize throughput: Sluice's list_objects / read_image /
# image_resize / image_to_tensor vs Python Pillow on the same JPEG files,
# side by side in one run (see bench.py).
#
#   bash benchmarks/image/run.sh
#
# Environment: IMAGES (640x480 JPEGs to generate, default 1000), REPEATS
# (best of, default 3), SIZE (resize target, default 224), SLUICE_BIN
# (default $CARGO_TARGET_DIR/release/sluice, built if missing), BENCH_VENV
# (default $HOME/.cache/sluice-bench-venv).
set -euo pipefail
cd "$(dirname "$0")/../.."

IMAGES=${IMAGES:-1000}
REPEATS=${REPEATS:-3}
SIZE=${SIZE:-224}
SLUICE_BIN=${SLUICE_BIN:-${CARGO_TARGET_DIR:-target}/release/sluice}
VENV=${BENCH_VENV:-$HOME/.cache/sluice-bench-venv}

if [[ ! -x "$VENV/bin/python" ]]; then python3 -m venv "$VENV"; fi
"$VENV/bin/pip" install -q -r benchmarks/image/requirements.txt
if [[ ! -x "$SLUICE_BIN" ]]; then cargo build --release -p sluice-server; fi
if ! "$SLUICE_BIN" serve --help | grep -q -- '--object-root'; then
  echo "$SLUICE_BIN predates --object-root; rebuild it: cargo build --release -p sluice-server" >&2
  exit 1
fi

work=$(mktemp -d /tmp/sluice-image-bench.XXXXXX)
mkdir "$work/images"  # must exist when the server starts: it is the object root
port=$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$SLUICE_BIN" serve --listen "127.0.0.1:$port" --data-dir "$work/sluice" \
  --object-root "$work/images" >"$work/server.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do
  if ! kill -0 "$pid" 2>/dev/null; then echo "sluice exited during start-up:" >&2; tail -20 "$work/server.log" >&2; exit 1; fi
  if "$VENV/bin/python" -c "import psycopg; psycopg.connect(host='127.0.0.1', port=$port, user='sluice', dbname='sluice')" 2>/dev/null; then break; fi
  sleep 0.2
done
status=0
"$VENV/bin/python" benchmarks/image/bench.py --images "$IMAGES" --repeats "$REPEATS" --size "$SIZE" \
  --dir "$work/images" --port "$port" || status=$?
if [[ $status -ne 0 ]]; then echo "--- tail of the sluice log" >&2; tail -20 "$work/server.log" >&2; fi
exit "$status"
