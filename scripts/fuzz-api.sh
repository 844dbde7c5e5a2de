#!/usr/bin/env bash
# Fuzzes the blockhook HTTP API with schemathesis, driven by the served /openapi.json.
#
# Starts `blockhook serve` on a free loopback port with a temporary data directory and a fresh
# admin token, creates a merchant, an endpoint, an API key and an event (so a delivery) so that
# every path parameter gets a real id, then runs schemathesis with the `not_a_server_error` check (any 5xx except 503 fails),
# bounded by --max-examples and a time budget per pass, and stops the server.
#
# Usage: scripts/fuzz-api.sh            (env: MAX_EXAMPLES=50 MAX_TIME=180 SEED=...)
# Needs python3 (venv) and network access to PyPI; the venv is cached in $FUZZ_VENV when set.
set -euo pipefail

cd "$(dirname "$0")/.."
MAX_EXAMPLES="${MAX_EXAMPLES:-50}"
MAX_TIME="${MAX_TIME:-180}"

work="$(mktemp -d -t blockhook-fuzz.XXXXXX)"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# 1. schemathesis in a venv.
venv="${FUZZ_VENV:-$work/venv}"
if [[ ! -x "$venv/bin/schemathesis" ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet schemathesis
fi
"$venv/bin/schemathesis" --version

# 2. The binary: release if built, else debug (built when missing).
if [[ -x target/release/blockhook ]]; then
    bin=target/release/blockhook
else
    [[ -x target/debug/blockhook ]] || cargo build -p blockhook
    bin=target/debug/blockhook
fi
echo "binary: $bin"

# 3. A free loopback port and the server.
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
token="fuzz-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
BLOCKHOOK_SERVER__ADMIN_TOKEN="$token" BLOCKHOOK_LOG__FILTER="${BLOCKHOOK_LOG__FILTER:-warn}" \
    "$bin" serve --listen "127.0.0.1:$port" --data-dir "$work/data" \
    --allow-http --allow-net 127.0.0.0/8 >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
    curl -fsS "$base/openapi.json" -o /dev/null 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log"; echo "server exited"; exit 1; }
    sleep 0.1
done
curl -fsS "$base/openapi.json" -o "$work/openapi.json"

# 4. Real ids for every path parameter: a merchant with an endpoint, an API key, and an event
#    (so a delivery) for that endpoint.
auth=(-H "Authorization: Bearer $token" -H "Content-Type: application/json")
field() { python3 -c "import json,sys; v=json.load(sys.stdin); print($1)"; }
merchant="$(curl -fsS "${auth[@]}" -d '{"name":"fuzz merchant"}' "$base/v1/merchants" | field 'v["id"]')"
endpoint="$(curl -fsS "${auth[@]}" -d '{"url":"http://127.0.0.1:9/hook"}' \
    "$base/v1/merchants/$merchant/endpoints" | field 'v["id"]')"
key="$(curl -fsS "${auth[@]}" -d '{"name":"fuzz key"}' "$base/v1/merchants/$merchant/api-keys" |
    field 'v["id"]')"
event="$(curl -fsS "${auth[@]}" \
    -d "{\"merchant_id\":\"$merchant\",\"event_type\":\"Payment\",\"payload\":{\"orderNo\":\"fuzz-1\"}}" \
    "$base/v1/events" | field 'v["event_id"]')"
delivery="$(curl -fsS "${auth[@]}" "$base/v1/merchants/$merchant/events/$event/deliveries" |
    field '(v["data"] if isinstance(v, dict) else v)[0]["id"]')"
echo "merchant: $merchant  endpoint: $endpoint  key: $key  event: $event  delivery: $delivery"

python3 - "$work/openapi.json" "$merchant" "$endpoint" "$key" "$event" "$delivery" \
    >"$work/schemathesis.toml" <<'PY2'
import json, sys
doc = json.load(open(sys.argv[1]))
ids = dict(zip(["merchant_id", "endpoint_id", "key_id", "event_id", "delivery_id"], sys.argv[2:]))
# An ordering key (held keys: releasing one that is not held is a plain 404).
ids["key"] = "OrderNo_1"
names = set()
for item in doc.get("paths", {}).values():
    for op in [item] + [v for v in item.values() if isinstance(v, dict)]:
        for p in op.get("parameters", []) or []:
            if isinstance(p, dict) and p.get("in") == "path":
                names.add(p["name"])
missing = sorted(names - ids.keys())
if missing:
    sys.exit(f"no real id for the path parameters {missing}: extend scripts/fuzz-api.sh")
print('[checks.not_a_server_error]')
print('expected-statuses = ["2xx", "3xx", "4xx", "503"]')
print('[parameters]')
for n in sorted(names):
    print(f'"path.{n}" = "{ids[n]}"')
PY2
cat "$work/schemathesis.toml"

# 5. Fuzz (from the temporary directory, so schemathesis' .schemathesis/ cache lands there).
#    Three passes with the same real ids: everything but DELETE first, so that deleting the
#    merchant, endpoint or key does not turn the rest of the run into 404s; then deleting the
#    key and the endpoint; then deleting the merchant.
rc=0
fuzz() {
    (cd "$work" && "$venv/bin/schemathesis" --config-file "$work/schemathesis.toml" \
        run "$base/openapi.json" \
        --url "$base" \
        -H "Authorization: Bearer $token" \
        --checks not_a_server_error \
        --max-examples "$MAX_EXAMPLES" \
        --max-time "$MAX_TIME" \
        --request-timeout 10 \
        --generation-database none \
        ${SEED:+--seed "$SEED"} "$@") || rc=$?
}
fuzz --exclude-method DELETE
fuzz --include-method DELETE --exclude-path '/v1/merchants/{merchant_id}'
fuzz --include-method DELETE --include-path '/v1/merchants/{merchant_id}'

# 6. The server must still be up (no crash), then stop it.
if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "blockhook serve exited during the fuzz run:"; tail -50 "$work/server.log"; exit 1
fi
if grep -qi "panicked" "$work/server.log"; then
    echo "blockhook serve logged a panic:"; grep -i -A5 "panicked" "$work/server.log"; rc=1
fi
echo "schemathesis exit code: $rc"
exit "$rc"
