#!/usr/bin/env bash
# Install the toolchains that receivers/run-tests.sh uses, from Debian's packages.
# Idempotent: only what is missing is installed (Go 1.19 and PHP 8.2 on Debian 12).
set -euo pipefail

need=()
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v node >/dev/null 2>&1 || need+=(nodejs)
{ command -v java >/dev/null 2>&1 && command -v javac >/dev/null 2>&1; } || need+=(default-jdk-headless)
command -v go >/dev/null 2>&1 || need+=(golang-go)
command -v php >/dev/null 2>&1 || need+=(php-cli)

if [ ${#need[@]} -eq 0 ]; then
  echo "receiver toolchains: all present"
  exit 0
fi

sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
echo "receiver toolchains: installing ${need[*]}"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}"
