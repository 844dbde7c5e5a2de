#!/usr/bin/env bash
# Peak memory of `blockhook serve` alone while 100,000 deliveries are pending.
#
# Starts the release binary on a temporary SQLite data directory, creates one merchant with one
# endpoint whose receiver never answers within the timeout (a loopback listener that accepts and
# stays silent), so every attempt times out and deliveries pile up, publishes EVENTS events in
# batches of 100 through the real ingest API, waits until the queue holds them all, and prints the
# server's peak RSS (VmHWM) and current RSS (VmRSS) with the queue figures of `/metrics`.
#
# Usage: scripts/backlog-rss.sh          (env: EVENTS=100000 BATCH=100)
set -euo pipefail

cd "$(dirname "$0")/.."
EVENTS="${EVENTS:-100000}"
BATCH="${BATCH:-100}"
[[ -x target/release/blockhook ]] || cargo build --release -p blockhook
bin=target/release/blockhook

work="$(mktemp -d -t blockhook-rss.XXXXXX)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port="$(free_port)"
silent="$(free_port)"
base="http://127.0.0.1:$port"
token="rss-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"

# A receiver that accepts connections and never answers.
python3 - "$silent" <<'PY' &
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(4096)
held = []
while True:
    c, _ = s.accept(); held.append(c)
PY
pids+=($!)

cat >"$work/blockhook.toml" <<EOF
[server]
max_batch_events = $BATCH
[delivery]
allow_http = true
allow_nets = ["127.0.0.0/8"]
[api]
requests_per_second = 0
[log]
filter = "warn"
EOF
BLOCKHOOK_SERVER__ADMIN_TOKEN="$token" "$bin" serve --config "$work/blockhook.toml" \
    --listen "127.0.0.1:$port" --data-dir "$work/data" >"$work/server.log" 2>&1 &
server=$!
pids+=("$server")
for _ in $(seq 1 100); do curl -fsS "$base/healthz" -o /dev/null 2>/dev/null && break; sleep 0.1; done

python3 - "$base" "$token" "$silent" "$EVENTS" "$BATCH" <<'PY'
import http.client, json, sys, urllib.parse
base, token, silent, events, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
u = urllib.parse.urlparse(base)
conn = http.client.HTTPConnection(u.hostname, u.port)
def call(method, path, body):
    conn.request(method, path, json.dumps(body), {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    r = conn.getresponse(); data = r.read()
    if r.status >= 300: sys.exit(f"{method} {path}: {r.status} {data[:300]!r}")
    return json.loads(data)
m = call("POST", "/v1/merchants", {"name": "rss"})["id"]
call("POST", f"/v1/merchants/{m}/endpoints", {"url": f"http://127.0.0.1:{silent}/hook"})
payload = {"custNo": "CustNo_00240101", "symbol": "USDT", "amount": "2000.00", "status": "SUCCESS",
           "txId": "0x7614a9840d9422feaef4671e0ee98dd7092ebcba6e41076285f99d0b2b0de5fe", "network": "Ethereum",
           "chainId": "1", "fromAddress": "0xa9e358e33a57e67c9b84618a52f0194c345c8e35", "cashierId": 86100021}
for first in range(0, events, batch):
    n = min(batch, events - first)
    evs = [{"merchant_id": m, "event_type": "Payment", "payload": dict(payload, orderNo=f"OrderNo_{first + i:012}")} for i in range(n)]
    call("POST", "/v1/events/batch", {"events": evs})
print(f"published {events} events in batches of {batch}")
PY

# The queue at a glance, from /metrics.
queue() { curl -fsS "$base/metrics" | grep -E '^blockhook_(queue|events_ingested|deliveries_in_flight)' || true; }
sleep 5
queue
echo "server $(grep -E 'VmHWM|VmRSS' /proc/$server/status | tr -s ' \n' ' ')"
