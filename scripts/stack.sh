#!/usr/bin/env bash
# The local stack, natively (no Docker): install what is missing, start what is not
# running, wait until healthy. Idempotent: running `up` again restarts only what stopped.
#   scripts/stack.sh up [component...]   (default: everything)
#   scripts/stack.sh down [component...]
#   scripts/stack.sh status [component...]   (exit 1 if any named one is not running)
# Components: kafka postgres s3 prometheus ingest stream loader
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL="${EVENTPIPE_LOCAL_DIR:-$ROOT/.local}"
RUN="$LOCAL/run"
LOG="$LOCAL/log"
VENV="$ROOT/.venv"
KAFKA_PORT=9092
KAFKA_CONTROLLER_PORT=9093
PG_PORT=${EVENTPIPE_STACK_PG_PORT:-5432}  # override only to run a second stack beside one
S3_PORT=9000
PROM_PORT=9090
S3RVER_VERSION=3.7.1
# The real SDKs the e2e tests drive (tests/e2e/test_sdks.py), pinned. analytics-node 3 needs
# Node >= 20; puppeteer-core 24.x is the last line that runs on Node 20 (25.x needs 22).
SDK_NPM_PACKAGES=(@segment/analytics-next@1.84.3 @segment/analytics-node@3.1.0 puppeteer-core@24.43.1)
SERVICES_ALL=(kafka postgres s3 prometheus ingest stream loader)

mkdir -p "$RUN" "$LOG"

say() { printf '\033[1m[stack]\033[0m %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Liveness. `kill -0` is not enough: it succeeds on a zombie (here orphans are reaped a
# second or two late, so right after a kill -9 the dead service still "answers"), and a
# pid file can outlive its process while the number is reused. A service is running only
# if its process exists, is not a zombie, and its command line is the one we started.
proc_running() { # pid: exists and is not a zombie (state field of /proc/PID/stat)
  local pid=$1 stat state
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  state=${stat##*) }  # the name field may contain spaces and parentheses: cut at the last ") "
  state=${state%% *}
  [[ -n $state && $state != Z && $state != X ]]
}

service_signature() { # name: the part of its command line that identifies it (a glob)
  case $1 in
    kafka) echo "*kafka.Kafka $LOCAL/kafka/server.properties*" ;;
    postgres) echo "*postgres -D $(pg_home)/data*" ;;
    s3) echo "*s3rver.js -d $LOCAL/s3 *" ;;
    prometheus) echo "*--storage.tsdb.path=$LOCAL/prometheus *" ;;
    ingest | stream | loader) echo "*/bin/eventpipe $1" ;;
    *) echo "*" ;;
  esac
}

pid_is_service() { # name pid
  local name=$1 pid=$2 cmdline signature
  proc_running "$pid" || return 1
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  cmdline=${cmdline% }
  signature=$(service_signature "$name")
  # shellcheck disable=SC2053 # the signature is a glob on purpose
  [[ $cmdline == $signature ]]
}

pid_alive() { # name: its pid file names a running process that is this service
  local f="$RUN/$1.pid"
  [[ -s "$f" ]] && pid_is_service "$1" "$(cat "$f")"
}

wait_for() { # name seconds command...
  local name=$1 secs=$2; shift 2
  local i
  for ((i = 0; i < secs * 4; i++)); do
    if "$@"; then return 0; fi
    # alive, not a zombie: right after spawn its command line can still be this script's
    # (forked, not yet exec'd), so the service signature is not checked here
    if [[ -s "$RUN/$name.pid" ]] && ! proc_running "$(cat "$RUN/$name.pid")"; then
      tail -n 30 "$LOG/$name.log" >&2 || true
      die "$name exited during start-up (log: $LOG/$name.log)"
    fi
    sleep 0.25
  done
  tail -n 30 "$LOG/$name.log" >&2 || true
  die "$name not healthy after ${secs}s (log: $LOG/$name.log)"
}

spawn() { # name command... : start detached, own session, pid file, log file
  local name=$1; shift
  setsid nohup "$@" >>"$LOG/$name.log" 2>&1 < /dev/null &
  echo $! >"$RUN/$name.pid"
}

apt_install() {
  command -v apt-get >/dev/null || die "need $* but apt-get is not available"
  say "installing Debian packages: $*"
  if [[ ! -f "$LOCAL/.apt-updated" ]]; then
    apt-get update -qq >/dev/null && touch "$LOCAL/.apt-updated"
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

# ---------------------------------------------------------------- kafka
kafka_install() {
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  if [[ ! -f "$LOCAL/kafka/libs/.complete" ]]; then
    command -v mvn >/dev/null || apt_install maven
    say "fetching Apache Kafka jars from Maven Central"
    mkdir -p "$LOCAL/kafka/libs"
    mvn -q -B -Dstyle.color=never -f "$ROOT/deploy/kafka/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$LOCAL/kafka/libs" -DincludeScope=runtime
    touch "$LOCAL/kafka/libs/.complete"
  fi
}

kafka_java() { java -Xms256m -Xmx1g -Dlog4j.configuration="file:$ROOT/deploy/kafka/log4j.properties" -cp "$LOCAL/kafka/libs/*" "$@"; }

kafka_up() {
  pid_alive kafka && port_open $KAFKA_PORT && return 0
  kafka_install
  local conf="$LOCAL/kafka/server.properties" data="$LOCAL/kafka/data"
  sed -e "s#@PORT@#$KAFKA_PORT#g" -e "s#@CONTROLLER_PORT@#$KAFKA_CONTROLLER_PORT#g" -e "s#@DATA@#$data#g" \
    "$ROOT/deploy/kafka/server.properties.in" >"$conf"
  if [[ ! -f "$data/meta.properties" ]]; then
    say "formatting Kafka storage (KRaft)"
    local cluster_id
    cluster_id=$(kafka_java kafka.tools.StorageTool random-uuid)
    kafka_java kafka.tools.StorageTool format -t "$cluster_id" -c "$conf" >/dev/null
  fi
  say "starting Kafka on 127.0.0.1:$KAFKA_PORT"
  spawn kafka java -Xms256m -Xmx1g -XX:+UseG1GC \
    -Dlog4j.configuration="file:$ROOT/deploy/kafka/log4j.properties" \
    -cp "$LOCAL/kafka/libs/*" kafka.Kafka "$conf"
  wait_for kafka 90 port_open $KAFKA_PORT
}

topics_up() {
  ensure_venv
  "$VENV/bin/eventpipe" admin create-topics --wait 60
}

# ---------------------------------------------------------------- postgres
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

as_postgres() { su postgres -s /bin/sh -c "cd / && $*"; }

# The server runs as the postgres user, which cannot enter a checkout under /root (mode
# 700): then the cluster lives under /var/lib/eventpipe/<hash of this checkout> instead.
pg_home() {
  local home="$LOCAL/pg"
  mkdir -p "$home" && chown postgres "$home"
  if ! as_postgres "test -w '$home'" 2>/dev/null; then
    home="/var/lib/eventpipe/$(printf %s "$LOCAL" | md5sum | cut -c1-12)"
    mkdir -p "$home" && chown postgres "$home" && chmod 700 "$home"
  fi
  echo "$home"
}

postgres_up() {
  [[ -n "$(pg_bin)" ]] || apt_install postgresql
  local bin data sock home
  bin=$(pg_bin); home=$(pg_home); data="$home/data"; sock="$home/sock"
  if [[ -s "$data/postmaster.pid" ]] && pid_is_service postgres "$(head -n 1 "$data/postmaster.pid")"; then
    head -n 1 "$data/postmaster.pid" >"$RUN/postgres.pid"
    return 0
  fi
  mkdir -p "$data" "$sock"
  touch "$home/server.log"
  chown postgres "$data" "$sock" "$home/server.log"
  chmod 700 "$data"
  ln -sfn "$home/server.log" "$LOG/postgres.log"
  if [[ ! -s "$data/PG_VERSION" ]]; then
    say "initialising PostgreSQL in $data"
    as_postgres "$bin/initdb -D '$data' -U postgres -E UTF8 --auth-local=trust --auth-host=scram-sha-256" >/dev/null
  fi
  say "starting PostgreSQL on 127.0.0.1:$PG_PORT"
  as_postgres "$bin/pg_ctl -D '$data' -l '$home/server.log' -w -t 60 start \
    -o \"-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories='$sock' -c max_connections=200\"" >/dev/null
  head -n 1 "$data/postmaster.pid" >"$RUN/postgres.pid"
  # role and database of DESIGN.md (development credentials: local stack only)
  as_postgres "$bin/psql -h '$sock' -p $PG_PORT -U postgres -qtA -c \"DO \\\$\\\$BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'eventpipe') THEN
        CREATE ROLE eventpipe LOGIN PASSWORD 'eventpipe'; END IF; END\\\$\\\$;\"" >/dev/null
  if ! as_postgres "$bin/psql -h '$sock' -p $PG_PORT -U postgres -qtA -c \"SELECT 1 FROM pg_database WHERE datname='eventpipe'\"" | grep -q 1; then
    as_postgres "$bin/createdb -h '$sock' -p $PG_PORT -U postgres -O eventpipe eventpipe"
  fi
}

postgres_down() {
  local bin data
  bin=$(pg_bin); data="$(pg_home)/data"
  [[ -n "$bin" && -s "$data/postmaster.pid" ]] || return 0
  say "stopping PostgreSQL"
  as_postgres "$bin/pg_ctl -D '$data' -m fast -w stop" >/dev/null || true
  rm -f "$RUN/postgres.pid"
}

# ---------------------------------------------------------------- S3 API server
# s3rver (npm) keeps objects as files under .local/s3, so the raw archive survives
# restarts; moto's server is in-memory and serves the unit of tests only.
s3_up() {
  pid_alive s3 && port_open $S3_PORT && return 0
  command -v node >/dev/null || apt_install nodejs npm
  local dir="$LOCAL/s3rver"
  if [[ ! -f "$dir/node_modules/s3rver/bin/s3rver.js" ]]; then
    say "installing s3rver $S3RVER_VERSION from npm"
    mkdir -p "$dir"
    npm install --prefix "$dir" --no-audit --no-fund --silent "s3rver@$S3RVER_VERSION" >/dev/null
  fi
  mkdir -p "$LOCAL/s3"
  say "starting the S3 API server (s3rver) on 127.0.0.1:$S3_PORT"
  # s3rver's ListObjectsV2 continuation token is DES-encrypted, which Node's OpenSSL 3 only
  # offers through its legacy provider: without it every listing of >1000 keys is a 500
  NODE_OPTIONS=--openssl-legacy-provider \
    spawn s3 node "$dir/node_modules/s3rver/bin/s3rver.js" -d "$LOCAL/s3" -a 127.0.0.1 -p $S3_PORT \
      --silent --no-vhost-buckets --configure-bucket "${EVENTPIPE_S3_BUCKET:-eventpipe}"
  wait_for s3 30 port_open $S3_PORT
}

# ---------------------------------------------------------------- prometheus
prometheus_up() {
  pid_alive prometheus && port_open $PROM_PORT && return 0
  command -v prometheus >/dev/null || apt_install prometheus
  mkdir -p "$LOCAL/prometheus"
  say "starting Prometheus on 127.0.0.1:$PROM_PORT"
  spawn prometheus prometheus --config.file="$ROOT/deploy/prometheus/prometheus.yml" \
    --storage.tsdb.path="$LOCAL/prometheus" --web.listen-address=127.0.0.1:$PROM_PORT \
    --storage.tsdb.retention.time=35d  # no --web.enable-lifecycle: /-/quit would be open to any local user; reload with SIGHUP
  wait_for prometheus 30 port_open $PROM_PORT
}

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
    [[ -f "$LOCAL/.apt-updated" ]] || { apt-get update -qq >/dev/null && touch "$LOCAL/.apt-updated"; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  sdk_tools_up
}

sdk_tools_up() {
  local dir="$LOCAL/sdks" stamp="$LOCAL/sdks/.installed" wanted="${SDK_NPM_PACKAGES[*]}"
  [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]] && return 0
  say "installing the SDK test tools from npm: $wanted"
  mkdir -p "$dir"
  # PUPPETEER_SKIP_DOWNLOAD: puppeteer-core downloads no browser anyway; Debian's chromium is used
  PUPPETEER_SKIP_DOWNLOAD=1 npm install --prefix "$dir" --no-audit --no-fund --silent \
    "${SDK_NPM_PACKAGES[@]}" >/dev/null
  echo "$wanted" >"$stamp"
}

# ---------------------------------------------------------------- services
http_ok() { "$VENV/bin/python" -c "import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$1" 2>/dev/null; }

ingest_up() {
  pid_alive ingest && return 0
  ensure_venv
  say "starting ingest on 127.0.0.1:${EVENTPIPE_INGEST_PORT:-8080}"
  spawn ingest "$VENV/bin/eventpipe" ingest
  wait_for ingest 30 http_ok "http://127.0.0.1:${EVENTPIPE_INGEST_PORT:-8080}/readyz"
}

stream_up() {
  pid_alive stream && return 0
  ensure_venv
  "$VENV/bin/python" -c "import eventpipe.stream.worker" 2>/dev/null || { say "stream not built yet: skipped"; return 0; }
  say "starting stream worker (metrics on 127.0.0.1:${EVENTPIPE_STREAM_WEB_PORT:-6066})"
  spawn stream "$VENV/bin/eventpipe" stream
  wait_for stream 60 http_ok "http://127.0.0.1:${EVENTPIPE_STREAM_WEB_PORT:-6066}/metrics"
}

loader_up() {
  pid_alive loader && return 0
  ensure_venv
  "$VENV/bin/python" -c "import eventpipe.loader.service" 2>/dev/null || { say "loader not built yet: skipped"; return 0; }
  say "starting loader (metrics on 127.0.0.1:${EVENTPIPE_LOADER_PORT:-8082})"
  spawn loader "$VENV/bin/eventpipe" loader
  wait_for loader 60 http_ok "http://127.0.0.1:${EVENTPIPE_LOADER_PORT:-8082}/metrics"
}

stop_pid() { # name [signal]
  local name=$1 sig=${2:-TERM} pid i
  [[ -s "$RUN/$name.pid" ]] || return 0
  pid=$(cat "$RUN/$name.pid")
  if pid_is_service "$name" "$pid"; then  # never signal a stranger that reused the pid
    say "stopping $name"
    kill -"$sig" -- "-$pid" 2>/dev/null || kill -"$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < 120; i++)); do proc_running "$pid" || break; sleep 0.25; done
    proc_running "$pid" && { kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; }
  fi
  rm -f "$RUN/$name.pid"
}

component_up() {
  case $1 in
    kafka) kafka_up; topics_up ;;
    postgres) postgres_up ;;
    s3) s3_up ;;
    prometheus) prometheus_up ;;
    ingest) ingest_up ;;
    stream) stream_up ;;
    loader) loader_up ;;
    tools) tools_up ;;
    *) die "unknown component $1" ;;
  esac
}

component_down() {
  case $1 in
    postgres) postgres_down ;;
    tools) ;;
    *) stop_pid "$1" ;;
  esac
}

status() { # [component...]; exit status 0 only if every one named is running
  local name names=("$@") all=0
  [[ ${#names[@]} -gt 0 ]] || names=("${SERVICES_ALL[@]}")
  for name in "${names[@]}"; do
    if [[ $name == postgres ]]; then
      local pidfile pid; pidfile="$(pg_home)/data/postmaster.pid"
      pid=$(head -n 1 "$pidfile" 2>/dev/null || true)
      if pid_is_service postgres "$pid"; then echo "$name: running (pid $pid)"
      else echo "$name: stopped"; all=1; fi
    elif pid_alive "$name"; then echo "$name: running (pid $(cat "$RUN/$name.pid"))"
    else echo "$name: stopped"; all=1; fi
  done
  return $all
}

cmd=${1:-status}; shift || true
case $cmd in
  up)
    ensure_venv
    comps=("$@"); [[ ${#comps[@]} -gt 0 ]] || comps=("${SERVICES_ALL[@]}")
    for c in "${comps[@]}"; do component_up "$c"; done
    say "up: $(status | tr '\n' ' ')" ;;
  down)
    comps=("$@")
    if [[ ${#comps[@]} -eq 0 ]]; then comps=(loader stream ingest prometheus s3 kafka postgres); fi
    for c in "${comps[@]}"; do component_down "$c"; done ;;
  status) status "$@" ;;
  install) ensure_venv; kafka_install ;;
  venv) ensure_venv ;;
  *) die "usage: $0 up|down|status|install [component...]" ;;
esac
