#!/usr/bin/env bash
# The local stack, natively (no Docker). This script installs what is missing (the venv,
# Debian packages, Kafka's jars from Maven, s3rver and the SDK test tools from npm); the
# stack itself (start, health, liveness, stop, ports) is eventpipe.devstack, the one manager
# that the tests' dedicated components use too (python -m eventpipe.devstack).
#   scripts/stack.sh up [component...]       install what they need, start what is not running,
#                                            wait until healthy (again: restarts what stopped)
#   scripts/stack.sh down [component...]
#   scripts/stack.sh status [component...]   (exit 1 if any named one is not running)
#   scripts/stack.sh ports                   where each part listens (EVENTPIPE_* settings)
#   scripts/stack.sh up tools | install | venv | dbt
# Components: kafka postgres s3 prometheus ingest stream loader; `tools`: test and bench tools.
# A second stack: other EVENTPIPE_*_PORT / _BOOTSTRAP / _ENDPOINT / _DSN settings and
# EVENTPIPE_STACK_DIR (README, "A second stack").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
INSTALLS="$ROOT/.local"  # downloaded tools of this checkout (each stack's data: EVENTPIPE_STACK_DIR)
LOG="$INSTALLS/log"
VENV="$ROOT/.venv"
S3RVER_VERSION=3.7.1
# The real SDKs the e2e tests drive (tests/e2e/test_sdks.py), pinned. analytics-node 3 needs
# Node >= 20; puppeteer-core 24.x is the last line that runs on Node 20 (25.x needs 22).
SDK_NPM_PACKAGES=(@segment/analytics-next@1.84.3 @segment/analytics-node@3.1.0 puppeteer-core@24.43.1)
SERVICES_ALL=(kafka postgres s3 prometheus ingest stream loader)
# dbt for the data tests (docs/checks.md), in a venv of its own: dbt-core 1.11 pins pathspec<0.13,
# which breaks mypy in .venv; dbt-core 1.12 downloads a wheel from GitHub at install time.
# Every package pinned (dbt-core 1.11.16, dbt-postgres 1.11.0 and their dependencies).
DBT_REQUIREMENTS="$ROOT/deploy/dbt/requirements.txt"

mkdir -p "$LOG"

say() { printf '\033[1m[stack]\033[0m %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

apt_install() {
  command -v apt-get >/dev/null || die "need $* but apt-get is not available"
  say "installing Debian packages: $*"
  if [[ ! -f "$INSTALLS/.apt-updated" ]]; then
    apt-get update -qq >/dev/null && touch "$INSTALLS/.apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# ---------------------------------------------------------------- python
ensure_venv() {
  if [[ ! -x "$VENV/bin/eventpipe" ]] || [[ "$ROOT/pyproject.toml" -nt "$VENV/.installed" ]]; then
    say "installing eventpipe (editable) into .venv"
    [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
    { "$VENV/bin/pip" install -q --upgrade pip setuptools wheel &&
      "$VENV/bin/pip" install -q -e "$ROOT[dev]"; } >"$LOG/pip.log" 2>&1 ||
      { tail -n 30 "$LOG/pip.log" >&2; die "pip install failed (log: $LOG/pip.log)"; }
    touch "$VENV/.installed"
  fi
}

# ---------------------------------------------------------------- installs per component
kafka_install() {
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  if [[ ! -f "$INSTALLS/kafka/libs/.complete" ]]; then
    command -v mvn >/dev/null || apt_install maven
    say "fetching Apache Kafka jars from Maven Central"
    mkdir -p "$INSTALLS/kafka/libs"
    mvn -q -B -Dstyle.color=never -f "$ROOT/deploy/kafka/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$INSTALLS/kafka/libs" -DincludeScope=runtime
    touch "$INSTALLS/kafka/libs/.complete"
  fi
}

postgres_install() {
  ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 || apt_install postgresql
  dbt_install  # the warehouse's data tests (eventpipe checks run, the loader's nightly)
}

dbt_install() {
  local dir="$INSTALLS/dbt" stamp="$INSTALLS/dbt/.installed" wanted
  wanted="$(sha256sum "$DBT_REQUIREMENTS" | cut -d' ' -f1)"
  [[ -x "$dir/bin/dbt" && -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]] && return 0
  say "installing dbt into .local/dbt (deploy/dbt/requirements.txt)"
  [[ -x "$dir/bin/python" ]] || python3 -m venv "$dir"
  "$dir/bin/pip" install -q -r "$DBT_REQUIREMENTS" >"$LOG/dbt-pip.log" 2>&1 ||
    { tail -n 30 "$LOG/dbt-pip.log" >&2; die "dbt install failed (log: $LOG/dbt-pip.log)"; }
  echo "$wanted" >"$stamp"
}

# s3rver (npm) keeps objects as files under the stack's data dir, so the raw archive
# survives restarts; moto's server is in-memory and serves the unit tests only.
s3_install() {
  command -v node >/dev/null || apt_install nodejs npm
  local dir="$INSTALLS/s3rver"
  if [[ ! -f "$dir/node_modules/s3rver/bin/s3rver.js" ]]; then
    say "installing s3rver $S3RVER_VERSION from npm"
    mkdir -p "$dir"
    npm install --prefix "$dir" --no-audit --no-fund --silent "s3rver@$S3RVER_VERSION" >/dev/null
  fi
}

prometheus_install() { command -v prometheus >/dev/null || apt_install prometheus; }

# ---------------------------------------------------------------- test and bench tools
# promtool comes with prometheus; docker-compose (Debian's, without the engine) validates
# docker-compose.yml; wrk drives the HTTP benchmarks; chromium (Debian's) runs the browser
# SDK and node + the npm packages under .local/sdks the Node and browser SDK tests.
tools_up() {
  local missing=()
  command -v promtool >/dev/null || missing+=(prometheus)
  command -v docker-compose >/dev/null || missing+=(docker-compose)
  command -v wrk >/dev/null || missing+=(wrk)
  command -v faketime >/dev/null || missing+=(faketime)  # make test-calendar's shifted s3rver
  command -v chromium >/dev/null || missing+=(chromium)
  command -v node >/dev/null || missing+=(nodejs npm)
  if [[ ${#missing[@]} -gt 0 ]]; then
    command -v apt-get >/dev/null || die "need ${missing[*]} but apt-get is not available"
    say "installing Debian packages: ${missing[*]}"
    [[ -f "$INSTALLS/.apt-updated" ]] || { apt-get update -qq >/dev/null && touch "$INSTALLS/.apt-updated"; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  sdk_tools_up
  dbt_install
}

sdk_tools_up() {
  local dir="$INSTALLS/sdks" stamp="$INSTALLS/sdks/.installed" wanted="${SDK_NPM_PACKAGES[*]}"
  [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]] && return 0
  say "installing the SDK test tools from npm: $wanted"
  mkdir -p "$dir"
  # PUPPETEER_SKIP_DOWNLOAD: puppeteer-core downloads no browser anyway; Debian's chromium is used
  PUPPETEER_SKIP_DOWNLOAD=1 npm install --prefix "$dir" --no-audit --no-fund --silent \
    "${SDK_NPM_PACKAGES[@]}" >/dev/null
  echo "$wanted" >"$stamp"
}

component_install() {
  case $1 in
    kafka) kafka_install ;;
    postgres) postgres_install ;;
    s3) s3_install ;;
    prometheus) prometheus_install ;;
    ingest | stream | loader) ;;  # the venv
    tools) tools_up ;;
    *) die "unknown component $1 (one of: ${SERVICES_ALL[*]} tools)" ;;
  esac
}

devstack() { "$VENV/bin/python" -m eventpipe.devstack "$@"; }

cmd=${1:-status}; shift || true
case $cmd in
  up)
    ensure_venv
    comps=("$@"); [[ ${#comps[@]} -gt 0 ]] || comps=("${SERVICES_ALL[@]}")
    parts=()
    for c in "${comps[@]}"; do
      component_install "$c"
      [[ $c == tools ]] || parts+=("$c")
    done
    if [[ ${#parts[@]} -gt 0 ]]; then devstack up "${parts[@]}"; fi ;;
  down | status | ports)  # no reinstall here: only what `up` started is touched
    [[ -x "$VENV/bin/python" ]] || ensure_venv
    devstack "$cmd" "$@" ;;
  install) ensure_venv; kafka_install ;;
  venv) ensure_venv ;;
  dbt) dbt_install ;;
  *) die "usage: $0 up|down|status|ports|install|venv|dbt [component...]" ;;
esac
