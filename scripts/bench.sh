#!/usr/bin/env bash
# The scale-out benchmarks in one command (BENCHMARKS.md, "Portcullis beside its peers"):
#   1. peers: direct, an nginx hop, Portcullis (policy + durable audit + filters), IBM
#      ContextForge and a FastMCP proxy against the same upstream, several concurrency levels,
#      peak RSS, the audit trail counted; charts into docs/benchmarks/;
#   2. policy: decisions per second against a 10,000-rule tenant (criterion);
#   3. audit: search latency over 10 million records and 1M-record exports (PostgreSQL: the
#      machine's server at 127.0.0.1:5432 unless PORTCULLIS_BENCH_DATABASE_URL says otherwise).
# Usage: scripts/bench.sh [peers|policy|audit ...]   (default: all three)
# Knobs: PEERS_SECONDS, PEERS_CONCURRENCY, PEERS_ONLY, AUDIT_BENCH_ROWS (see the benches' docs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck source=/dev/null
source scripts/env.sh
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(peers policy audit)
for p in "${parts[@]}"; do
  case "$p" in
    peers|policy|audit) ;;
    *) echo "unknown benchmark: $p (peers, policy or audit)" >&2; exit 2 ;;
  esac
done
for p in "${parts[@]}"; do
  echo "== cargo bench -p server --bench $p ($(date -u +%H:%M:%S))"
  cargo bench -p server --bench "$p"
done
