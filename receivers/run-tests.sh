#!/usr/bin/env bash
# Run every receiver snippet's conformance test over the signature vectors.
#
#   receivers/run-tests.sh              # every language whose toolchain is installed
#   receivers/run-tests.sh go php       # only these
#   REQUIRE_ALL=1 receivers/run-tests.sh  # a missing toolchain counts as a failure (CI)
#
# Vectors: spec/vectors.json, spec/vectors.extra.json and, when it exists, ../shared/spec/vectors.json
# (relative to the repo root). Go and Java are built in a temporary directory; nothing is written
# to the repository. Exits non-zero if any run failed. receivers/install-toolchains.sh installs
# the toolchains.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"

vectors=("$root/spec/vectors.json" "$root/spec/vectors.extra.json")
if [ -f "$root/../shared/spec/vectors.json" ]; then
  vectors+=("$(cd "$root/../shared/spec" && pwd)/vectors.json")
fi

langs=("$@")
[ ${#langs[@]} -gt 0 ] || langs=(python node go java php)

export PYTHONDONTWRITEBYTECODE=1 # leave no __pycache__ in the repository

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

failed=()
skipped=()

have() { command -v "$1" >/dev/null 2>&1; }

skip() { # lang toolchain
  echo "SKIPPED $1: $2 not installed"
  skipped+=("$1")
}

check() { # lang command...
  local lang="$1"
  shift
  echo "== $lang"
  if ! "$@"; then
    echo "FAILED $lang"
    failed+=("$lang")
  fi
}

run_go() {
  local dir="$tmp/go"
  mkdir -p "$dir/blockhook"
  cp "$here/go/blockhook.go" "$dir/blockhook/"
  cp "$here/go/test_vectors.go" "$dir/"
  printf 'module blockhooktest\n\ngo 1.19\n' >"$dir/go.mod"
  if [ -z "${GOCACHE:-}" ] && [ -z "${HOME:-}" ] && [ -z "${XDG_CACHE_HOME:-}" ]; then
    export GOCACHE="$tmp/gocache"
  fi
  (
    cd "$dir" &&
      export GOFLAGS=-mod=mod GOPROXY=off GOTOOLCHAIN=local &&
      go vet ./blockhook &&
      go build -o "$dir/test_vectors" test_vectors.go
  ) && "$dir/test_vectors" "${vectors[@]}"
}

run_java() {
  local out="$tmp/java"
  mkdir -p "$out"
  javac -encoding UTF-8 -Xlint:all -Werror -d "$out" "$here/java/BlockhookWebhook.java" \
    "$here/java/VectorsTest.java" &&
    java -cp "$out" VectorsTest "${vectors[@]}"
}

echo "vectors:"
for v in "${vectors[@]}"; do echo "  $v"; done

if have python3; then
  check vectors python3 "$root/spec/gen_extra_vectors.py" --check
fi

for lang in "${langs[@]}"; do
  case "$lang" in
    python) if have python3; then check python python3 "$here/python/test_vectors.py" "${vectors[@]}"; else skip python python3; fi ;;
    node) if have node; then check node node "$here/node/test-vectors.js" "${vectors[@]}"; else skip node node; fi ;;
    go) if have go; then check go run_go; else skip go go; fi ;;
    java) if have java && have javac; then check java run_java; else skip java "java/javac"; fi ;;
    php) if have php; then check php php "$here/php/test_vectors.php" "${vectors[@]}"; else skip php php; fi ;;
    *)
      echo "unknown language: $lang (python node go java php)"
      failed+=("$lang")
      ;;
  esac
done

if [ "${REQUIRE_ALL:-0}" = 1 ] && [ ${#skipped[@]} -gt 0 ]; then
  echo "REQUIRE_ALL=1 and skipped: ${skipped[*]}"
  failed+=("${skipped[@]}")
fi

if [ ${#failed[@]} -gt 0 ]; then
  echo "receivers: FAILED (${failed[*]})"
  exit 1
fi
echo "receivers: all passed${skipped:+ (skipped: ${skipped[*]})}"
