#!/usr/bin/env bash
# Memory per idle connection: starts `blockhook serve`, opens N connections that stay idle
# (silent after connecting, and keep-alive after one request), and prints the server's resident
# memory growth per connection, read from /proc/<pid>/status.
#
#   bash scripts/idle-connections.sh [N]            (default 3000; loopback only)
#
# Uses target/release/blockhook when built, else the debug binary. The timeouts are raised for
# the measurement so the server does not close the connections while they are counted.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-3000}
if [[ -x target/release/blockhook ]]; then bin=target/release/blockhook; else
    [[ -x target/debug/blockhook ]] || cargo build -p blockhook
    bin=target/debug/blockhook
fi
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
BLOCKHOOK_SERVER__HEADER_READ_TIMEOUT=120s BLOCKHOOK_SERVER__IDLE_TIMEOUT=300s \
BLOCKHOOK_SERVER__MAX_CONNECTIONS_PER_IP=0 BLOCKHOOK_LOG__FILTER=warn \
    "$bin" serve --listen 127.0.0.1:0 --port-file "$dir/port" --data-dir "$dir/data" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 100); do [[ -s "$dir/port" ]] && break; sleep 0.1; done
addr=$(cat "$dir/port")
python3 - "$pid" "$addr" "$n" "$bin" <<'PY'
import socket, sys, time
pid, addr, n, binary = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
host, port = addr.rsplit(":", 1)

def rss_kib():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

def settle():
    time.sleep(1.5)
    return rss_kib()

def keep_alive_wave():
    """n connections, each idle after one request."""
    kept = []
    for _ in range(n):
        s = socket.create_connection((host, int(port)))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        s.recv(65536)
        kept.append(s)
    return kept

def warm():
    s = socket.create_connection((host, int(port)))
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    while s.recv(65536):
        pass
    s.close()

for _ in range(50):
    warm()
base = settle()
silent = [socket.create_connection((host, int(port))) for _ in range(n)]
after_silent = settle()
for s in silent:
    s.close()
time.sleep(1.5)
base2 = settle()
kept = keep_alive_wave()
after_kept = settle()
for s in kept:
    s.close()
released = settle()
# A second wave: memory freed by the first is reused, not added to.
kept = keep_alive_wave()
second = settle()
for s in kept:
    s.close()
print(f"binary: {binary}")
print(f"{n} silent connections: {(after_silent - base) / n:.1f} KiB each (RSS {base} -> {after_silent} KiB)")
print(f"{n} keep-alive connections after one request: {(after_kept - base2) / n:.1f} KiB each (RSS {base2} -> {after_kept} KiB)")
print(f"after closing them all: RSS {released} KiB; a second wave of {n}: RSS {second} KiB")
PY
