#!/usr/bin/env bash
# Local Apache Flink cluster for trying genreflow's Beam jobs on Flink.
#
#   scripts/flink.sh setup    install the Flink distribution (PyPI, own venv) and Beam's job server (Maven)
#   scripts/flink.sh up       start a JobManager + one TaskManager on 127.0.0.1 (idempotent)
#   scripts/flink.sh down     stop them and wait until they are gone (idempotent)
#   scripts/flink.sh status   print the cluster overview; exit 1 when it is not running
#   scripts/flink.sh jar      print the path of the job-server jar to pass as --flink_job_server_jar
#   scripts/flink.sh env      print the settings below as shell assignments
#
# Everything lives under .flink/ (git-ignored): venv/ (apache-flink + apache-flink-libraries, installed
# with --no-deps: with their dependencies pip would downgrade Beam, pyarrow and numpy in the project's
# venv), conf/ (generated config), log/, pid/, jobserver/.
#
# Versions. Beam 2.77 publishes job servers for Flink 1.19-2.2 (beam-runners-flink-<minor>-job-server).
# `setup` first asks Maven Central for that jar (GENREFLOW_BEAM_JOBSERVER_VERSION, default the installed
# Beam version). Where it is not served, it assembles the same job server from the runner library
# (beam-runners-flink-<minor>:GENREFLOW_BEAM_JAVA_VERSION and its dependencies, fetched with Maven) plus a
# manifest-only launcher jar whose Main-Class is FlinkJobServerDriver. See README, "Running on a cluster".
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FLINK_DIR="${GENREFLOW_FLINK_DIR:-$ROOT/.flink}"
FLINK_VERSION="${GENREFLOW_FLINK_VERSION:-1.19.3}"
FLINK_MINOR="${FLINK_VERSION%.*}"
# Beam Java release of the runner library used when assembling the job server.
BEAM_JAVA_VERSION="${GENREFLOW_BEAM_JAVA_VERSION:-2.62.0}"
REST_PORT="${GENREFLOW_FLINK_PORT:-8081}"
RPC_PORT="${GENREFLOW_FLINK_RPC_PORT:-6123}"
SLOTS="${GENREFLOW_FLINK_SLOTS:-2}"
START_TIMEOUT="${GENREFLOW_FLINK_START_TIMEOUT:-120}"
HOST_PYTHON="${GENREFLOW_FLINK_PYTHON:-python3}"
PROJECT_PY="$ROOT/.venv/bin/python"

VENV="$FLINK_DIR/venv"
CONF_DIR="$FLINK_DIR/conf"
LOG_DIR="$FLINK_DIR/log"
PID_DIR="$FLINK_DIR/pid"
JS_DIR="$FLINK_DIR/jobserver"
JAR="$JS_DIR/beam-flink-${FLINK_MINOR}-job-server.jar"

log() { echo "flink.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

flink_home() {
  local home
  home="$(ls -d "$VENV"/lib/python3*/site-packages/pyflink 2>/dev/null | head -n1)"
  [ -n "$home" ] && [ -x "$home/bin/start-cluster.sh" ] || return 1
  echo "$home"
}

beam_python_version() {
  if [ -x "$PROJECT_PY" ]; then
    "$PROJECT_PY" -c 'import apache_beam; print(apache_beam.__version__)' 2>/dev/null || echo 2.77.0
  else
    echo 2.77.0
  fi
}

setup_flink() {
  local home installed=""
  if home="$(flink_home)"; then
    installed="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("apache-flink"))' 2>/dev/null || true)"
  fi
  if [ "$installed" = "$FLINK_VERSION" ]; then
    log "Flink $FLINK_VERSION already installed in $VENV"
  else
    log "installing apache-flink==$FLINK_VERSION (distribution only, --no-deps) into $VENV"
    [ -x "$VENV/bin/python" ] || "$HOST_PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
      "apache-flink==$FLINK_VERSION" "apache-flink-libraries==$FLINK_VERSION"
    home="$(flink_home)" || die "apache-flink installed but bin/start-cluster.sh not found"
  fi
  # The wheel ships the scripts without their executable bit.
  chmod +x "$home"/bin/*.sh "$home"/bin/flink
}

# Writes a pom whose only dependency is ARTIFACT:VERSION (plus an slf4j binding for readable logs).
write_pom() {
  local artifact="$1" version="$2"
  cat >"$JS_DIR/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>genreflow</groupId>
  <artifactId>beam-flink-job-server</artifactId>
  <version>1</version>
  <dependencies>
    <dependency>
      <groupId>org.apache.beam</groupId>
      <artifactId>${artifact}</artifactId>
      <version>${version}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-simple</artifactId>
      <version>1.7.30</version>
    </dependency>
  </dependencies>
</project>
EOF
}

setup_jobserver() {
  if [ -s "$JAR" ] && [ -s "$JS_DIR/SOURCE" ]; then
    log "job server already present: $JAR ($(cat "$JS_DIR/SOURCE"))"
    return 0
  fi
  command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch Beam's Flink job server"
  command -v java >/dev/null || die "Java (17) is needed to run Flink"
  mkdir -p "$JS_DIR"
  local want="${GENREFLOW_BEAM_JOBSERVER_VERSION:-$(beam_python_version)}"
  local official="org.apache.beam:beam-runners-flink-${FLINK_MINOR}-job-server:${want}"
  log "asking Maven Central for $official"
  if mvn -B -q -U dependency:copy "-Dartifact=$official" "-DoutputDirectory=$JS_DIR/official" \
      >"$JS_DIR/mvn-official.log" 2>&1; then
    cp "$JS_DIR/official/beam-runners-flink-${FLINK_MINOR}-job-server-${want}.jar" "$JAR"
    echo "$official" >"$JS_DIR/SOURCE"
    log "job server: $official"
    return 0
  fi
  log "not served: $(grep -m1 -oE '(Could not find artifact|Unable to find artifact)[^(]*' "$JS_DIR/mvn-official.log" || echo "see $JS_DIR/mvn-official.log")"
  local runner="beam-runners-flink-${FLINK_MINOR}"
  log "assembling the job server from org.apache.beam:${runner}:${BEAM_JAVA_VERSION} and its dependencies"
  write_pom "$runner" "$BEAM_JAVA_VERSION"
  rm -rf "$JS_DIR/lib"
  (cd "$JS_DIR" && mvn -B -q dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=lib) \
    >"$JS_DIR/mvn-assemble.log" 2>&1 || { tail -n 20 "$JS_DIR/mvn-assemble.log" >&2; die "Maven could not resolve ${runner}:${BEAM_JAVA_VERSION}"; }
  # A manifest-only jar: `java -jar` (what Beam's FlinkRunner runs) follows its relative Class-Path.
  local manifest="$JS_DIR/MANIFEST.MF" classpath
  classpath="$(cd "$JS_DIR" && ls lib/*.jar | tr '\n' ' ')"
  {
    echo "Manifest-Version: 1.0"
    echo "Main-Class: org.apache.beam.runners.flink.FlinkJobServerDriver"
    # Manifest lines are limited to 72 bytes; continuation lines start with one space.
    printf 'Class-Path: %s\n' "$classpath" | fold -w 70 | sed '2,$s/^/ /'
  } >"$manifest"
  rm -f "$JAR"
  (cd "$JS_DIR" && jar --create --file "$JAR" --manifest "$manifest") 2>/dev/null \
    || (cd "$JS_DIR" && mkdir -p empty && jar cfm "$JAR" "$manifest" -C empty .)
  echo "org.apache.beam:${runner}:${BEAM_JAVA_VERSION} (assembled; ${official} not served)" >"$JS_DIR/SOURCE"
  log "job server: $JAR"
}

write_conf() {
  local home="$1"
  mkdir -p "$CONF_DIR" "$LOG_DIR" "$PID_DIR"
  cp "$home"/conf/log4j*.properties "$home"/conf/logback*.xml "$CONF_DIR"/ 2>/dev/null || true
  local java_opts
  java_opts="$(grep -m1 -E '^\s+all:' "$home/conf/config.yaml" | sed -E 's/^\s+all:\s*//')"
  cat >"$CONF_DIR/config.yaml" <<EOF
# Generated by scripts/flink.sh: a one-machine cluster listening on 127.0.0.1 only.
env.java.opts.all: ${java_opts}
env.pid.dir: ${PID_DIR}
env.log.dir: ${LOG_DIR}
jobmanager.bind-host: 127.0.0.1
jobmanager.rpc.address: 127.0.0.1
jobmanager.rpc.port: ${RPC_PORT}
jobmanager.memory.process.size: 1024m
taskmanager.bind-host: 127.0.0.1
taskmanager.host: 127.0.0.1
taskmanager.numberOfTaskSlots: ${SLOTS}
taskmanager.memory.process.size: 2048m
# Beam's portable translation shuffles between many operators; Flink's default network memory
# (10% of the TaskManager) is too little for the label job at parallelism 2.
taskmanager.memory.network.fraction: 0.25
taskmanager.memory.network.min: 256m
taskmanager.memory.network.max: 512m
parallelism.default: 1
rest.address: 127.0.0.1
rest.bind-address: 127.0.0.1
rest.port: ${REST_PORT}
blob.server.port: 0
taskmanager.rpc.port: 0
taskmanager.data.port: 0
EOF
  echo "127.0.0.1:${REST_PORT}" >"$CONF_DIR/masters"
  echo "127.0.0.1" >"$CONF_DIR/workers"
}

overview() {
  # Prints the REST overview JSON; fails when nothing answers.
  "$HOST_PYTHON" - "$REST_PORT" <<'EOF'
import json, sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/overview", timeout=3) as r:
    print(json.dumps(json.load(r)))
EOF
}

ready() {
  local ov
  ov="$(overview 2>/dev/null)" || return 1
  "$HOST_PYTHON" -c 'import json,sys; o=json.loads(sys.argv[1]); sys.exit(0 if o.get("taskmanagers",0)>=1 and o.get("slots-total",0)>=1 else 1)' "$ov"
}

# Whether PID is a live Flink process (a stale pid file may name a reused PID).
is_flink_pid() {
  { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null | grep -q 'org\.apache\.flink'
}

# PIDs from the pid files that are still Flink processes.
cluster_pids() {
  local pid
  for pid in $(cat "$PID_DIR"/*.pid 2>/dev/null | grep -E '^[0-9]+$'); do
    if is_flink_pid "$pid"; then echo "$pid"; fi
  done
}

cmd_up() {
  local home
  home="$(flink_home)" || die "Flink is not installed: run 'scripts/flink.sh setup' (make flink-setup)"
  if ready; then
    log "already running on 127.0.0.1:$REST_PORT"
    return 0
  fi
  # A half-started cluster (e.g. the JobManager without a TaskManager) is stopped before a fresh start.
  if [ -n "$(cluster_pids)" ]; then cmd_down; fi
  write_conf "$home"
  log "starting Flink $FLINK_VERSION (REST 127.0.0.1:$REST_PORT, $SLOTS slots)"
  FLINK_CONF_DIR="$CONF_DIR" FLINK_LOG_DIR="$LOG_DIR" FLINK_PID_DIR="$PID_DIR" \
    "$home/bin/jobmanager.sh" start >/dev/null
  FLINK_CONF_DIR="$CONF_DIR" FLINK_LOG_DIR="$LOG_DIR" FLINK_PID_DIR="$PID_DIR" \
    "$home/bin/taskmanager.sh" start >/dev/null
  local waited=0
  until ready; do
    sleep 1
    waited=$((waited + 1))
    if [ "$waited" -ge "$START_TIMEOUT" ]; then
      log "cluster did not become ready in ${START_TIMEOUT}s; last log lines:"
      tail -n 30 "$LOG_DIR"/*.log >&2 2>/dev/null || true
      cmd_down || true
      die "Flink failed to start"
    fi
  done
  log "ready after ${waited}s: http://127.0.0.1:$REST_PORT"
}

cmd_down() {
  local home pids
  home="$(flink_home)" || { log "Flink is not installed; nothing to stop"; return 0; }
  pids="$(cluster_pids)"
  if [ -z "$pids" ]; then
    rm -f "$PID_DIR"/*.pid
    log "not running"
    return 0
  fi
  FLINK_CONF_DIR="$CONF_DIR" FLINK_LOG_DIR="$LOG_DIR" FLINK_PID_DIR="$PID_DIR" \
    "$home/bin/taskmanager.sh" stop-all >/dev/null 2>&1 || true
  FLINK_CONF_DIR="$CONF_DIR" FLINK_LOG_DIR="$LOG_DIR" FLINK_PID_DIR="$PID_DIR" \
    "$home/bin/jobmanager.sh" stop-all >/dev/null 2>&1 || true
  local pid waited=0
  for pid in $pids; do
    while is_flink_pid "$pid"; do
      if [ "$waited" -ge 30 ]; then
        log "process $pid still alive after 30s; sending SIGKILL"
        kill -9 "$pid" 2>/dev/null || true
        break
      fi
      sleep 1
      waited=$((waited + 1))
    done
  done
  rm -f "$PID_DIR"/*.pid
  log "stopped"
}

cmd_status() {
  local ov
  if ov="$(overview 2>/dev/null)"; then
    echo "$ov"
  else
    log "not running on 127.0.0.1:$REST_PORT"
    return 1
  fi
}

cmd_env() {
  echo "FLINK_VERSION=$FLINK_VERSION"
  echo "FLINK_MASTER=localhost:$REST_PORT"
  echo "FLINK_JOB_SERVER_JAR=$JAR"
  echo "FLINK_SLOTS=$SLOTS"
}

case "${1:-}" in
  setup) setup_flink; setup_jobserver ;;
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  jar) [ -s "$JAR" ] || die "no job server yet: run 'scripts/flink.sh setup'"; echo "$JAR" ;;
  env) cmd_env ;;
  *) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
