#!/usr/bin/env bash
# Static checks of the Prometheus setup: config (native and docker), rules, rule unit tests.
#   scripts/check-prometheus.sh          (run by `make test` through tests/unit/test_prometheus_rules.py)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROM="$ROOT/deploy/prometheus"
command -v promtool >/dev/null || { echo "promtool not found (Debian: apt-get install prometheus)" >&2; exit 2; }

promtool check config "$PROM/prometheus.yml"
# the docker config names service hosts and /etc/prometheus paths: check it from a copy that
# points at the repo's rules, so a typo in it is caught without a Docker engine.
if [[ -f "$PROM/prometheus.docker.yml" ]]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  sed -e "s#/etc/prometheus/rules/#$PROM/rules/#g" "$PROM/prometheus.docker.yml" >"$tmp/prometheus.docker.yml"
  promtool check config "$tmp/prometheus.docker.yml"
fi
promtool check rules "$PROM"/rules/*.yml
promtool test rules "$PROM"/tests/*.yml
