#!/usr/bin/env bash
# `kansoku up --demo` (the README's main job) must show data through the CLI within seconds,
# and stop cleanly on SIGTERM. Bounded: 30 s for data, 30 s for the shutdown.
set -euo pipefail
cd "$(dirname "$0")/.."
data=$(mktemp -d)
port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
gw_port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
.venv/bin/kansoku up --demo --port "$port" --gateway-port "$gw_port" --data-dir "$data" >"$data/up.log" 2>&1 &
up_pid=$!
trap 'kill -TERM "$up_pid" 2>/dev/null || true' EXIT
started=$(date +%s.%N)
ok=0
for _ in $(seq 1 60); do
  if .venv/bin/kansoku calls --since 1h --url "$url" --json 2>/dev/null \
    | .venv/bin/python -c 'import json, sys; sys.exit(0 if len(json.load(sys.stdin)["data"]) >= 10 else 1)' 2>/dev/null; then
    ok=1
    break
  fi
  sleep 0.5
done
took=$(.venv/bin/python -c "import time; print(f'{time.time() - $started:.1f}')")
if [ "$ok" != 1 ]; then
  echo "kansoku up --demo: no data through the CLI within 30 s"; cat "$data/up.log"; exit 1
fi
echo "kansoku up --demo: data through the CLI after ${took} s"
# The gateway of `up` answers an OpenAI-style request and its record reaches the store.
reply=$(curl -sS -D "$data/headers" "http://127.0.0.1:$gw_port/v1/chat/completions" \
  -H 'Content-Type: application/json' -d '{"model": "chat", "messages": [{"role": "user", "content": "smoke"}]}')
echo "$reply" | .venv/bin/python -c 'import json, sys; assert json.load(sys.stdin)["choices"][0]["message"]["content"]'
trace=$(grep -i '^x-kansoku-trace-id:' "$data/headers" | tr -d '\r' | awk '{print $2}')
for _ in $(seq 1 20); do
  .venv/bin/kansoku trace "$trace" --url "$url" >/dev/null 2>&1 && break
  sleep 0.5
done
.venv/bin/kansoku trace "$trace" --url "$url" || { echo "the gateway's record did not reach the store"; cat "$data/up.log"; exit 1; }
.venv/bin/kansoku stats --by model --since 1h --url "$url"
kill -TERM "$up_pid"
for _ in $(seq 1 60); do kill -0 "$up_pid" 2>/dev/null || break; sleep 0.5; done
if kill -0 "$up_pid" 2>/dev/null; then
  echo "kansoku up did not stop within 30 s of SIGTERM"; cat "$data/up.log"; exit 1
fi
wait "$up_pid" || { echo "kansoku up exited with $?"; cat "$data/up.log"; exit 1; }
trap - EXIT
rm -rf "$data"
