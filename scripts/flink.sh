#!/usr/bin/env bash
# Local Apache Flink cluster for trying genreflow's Beam jobs on Flink.
#
#   scripts/flink.sh setup     install the Flink distribution (PyPI, own venv) and build Beam's job server (Maven)
#   scripts/flink.sh jobserver only build (or take from the cache) the job server jar
#   scripts/flink.sh up        start a JobManager + one TaskManager on 127.0.0.1 (idempotent)
#   scripts/flink.sh down      stop them and wait until they are gone (idempotent)
#   scripts/flink.sh status    print the cluster overview; exit 1 when it is not running
#   scripts/flink.sh jar       print the path of the job-server jar to pass as --flink_job_server_jar
#   scripts/flink.sh env       print the settings below as shell assignments
#   scripts/flink.sh versions  print the Flink, Beam Java (job server) and Beam Python versions in use
#
# Everything lives under .flink/ (git-ignored): venv/ (apache-flink + apache-flink-libraries, installed
# with --no-deps: with their dependencies pip would downgrade Beam, pyarrow and numpy in the project's
# venv), conf/ (generated config), log/, pid/, jobserver/.
#
# The job server. Maven Central serves no beam-runners-flink-*-job-server jar of any version, and of the
# runner library only beam-runners-flink-1.19 at 2.62.0 resolves with all its dependencies (2.70.0 lacks
# beam-runners-java-job-service). `setup` shades org.apache.beam:beam-runners-flink-<minor>:
# GENREFLOW_BEAM_JAVA_VERSION (default 2.62.0) and its dependencies into ONE self-contained jar
# (maven-shade-plugin, pinned plugins and timestamps: reproducible) that works in every submission
# mode, --flink_submit_uber_jar included. The jar is cached outside the clone under
# $GENREFLOW_CACHE_DIR (default ~/.cache/genreflow)/flink-job-server/<hash of the pom>/ and copied to
# .flink/jobserver/. The Beam 2.62 Java job server drives the Beam 2.77 Python SDK: see README,
# "Running on a cluster".
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
# Built job-server jars, keyed by their pom, outside the clone: a fresh clone copies instead of rebuilding.
CACHE_DIR="${GENREFLOW_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/genreflow}"
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

# The Beam Python SDK version in the project's venv (what the job's workers run).
beam_python_version() {
  "$PROJECT_PY" -c 'import importlib.metadata as m; print(m.version("apache-beam"))' 2>/dev/null \
    || echo "unknown (no $PROJECT_PY: run make install)"
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

# Prints the pom of the job server: Beam's Flink runner library and its dependencies, shaded into one
# jar (maven-shade-plugin 3.5.1) with merged META-INF/services, appended reference.conf files and
# FlinkJobServerDriver as Main-Class, like Beam's own (unpublished) job-server jar. Plugin versions and
# project.build.outputTimestamp are pinned, so the same pom gives a byte-identical jar.
jobserver_pom() {
  cat <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>genreflow</groupId>
  <artifactId>beam-flink-${FLINK_MINOR}-job-server</artifactId>
  <version>${BEAM_JAVA_VERSION}</version>
  <packaging>jar</packaging>
  <properties>
    <project.build.outputTimestamp>2024-01-01T00:00:00Z</project.build.outputTimestamp>
    <project.build.sourceEncoding>UTF-8</project.build.sourceEncoding>
  </properties>
  <dependencies>
    <dependency>
      <groupId>org.apache.beam</groupId>
      <artifactId>beam-runners-flink-${FLINK_MINOR}</artifactId>
      <version>${BEAM_JAVA_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-simple</artifactId>
      <version>1.7.30</version>
    </dependency>
  </dependencies>
  <build>
    <plugins>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-jar-plugin</artifactId>
        <version>3.3.0</version>
      </plugin>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-resources-plugin</artifactId>
        <version>3.3.1</version>
      </plugin>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-shade-plugin</artifactId>
        <version>3.5.1</version>
        <executions>
          <execution>
            <phase>package</phase>
            <goals><goal>shade</goal></goals>
            <configuration>
              <createDependencyReducedPom>false</createDependencyReducedPom>
              <filters>
                <filter>
                  <artifact>*:*</artifact>
                  <excludes>
                    <exclude>META-INF/*.SF</exclude>
                    <exclude>META-INF/*.DSA</exclude>
                    <exclude>META-INF/*.RSA</exclude>
                  </excludes>
                </filter>
              </filters>
              <transformers>
                <transformer implementation="org.apache.maven.plugins.shade.resource.ServicesResourceTransformer"/>
                <transformer implementation="org.apache.maven.plugins.shade.resource.AppendingTransformer">
                  <resource>reference.conf</resource>
                </transformer>
                <transformer implementation="org.apache.maven.plugins.shade.resource.ManifestResourceTransformer">
                  <mainClass>org.apache.beam.runners.flink.FlinkJobServerDriver</mainClass>
                </transformer>
              </transformers>
            </configuration>
          </execution>
        </executions>
      </plugin>
    </plugins>
  </build>
</project>
EOF
}

# Checks that JAR is a self-contained job server of Beam BEAM_JAVA_VERSION; prints that version.
check_jar() {
  "$HOST_PYTHON" - "$1" "$FLINK_MINOR" <<'EOF'
import sys, zipfile
jar, minor = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(jar) as z:
    names = set(z.namelist())
    manifest = z.read("META-INF/MANIFEST.MF").decode()
    props = f"META-INF/maven/org.apache.beam/beam-runners-flink-{minor}/pom.properties"
    version = dict(l.split("=", 1) for l in z.read(props).decode().splitlines() if "=" in l and not l.startswith("#"))["version"]
need = ["org/apache/beam/runners/flink/FlinkJobServerDriver.class",
        "org/apache/beam/runners/flink/FlinkPipelineRunner.class",   # entry class of --flink_submit_uber_jar
        "org/apache/flink/client/program/PackagedProgram.class"]
missing = [n for n in need if n not in names]
if missing or "Main-Class: org.apache.beam.runners.flink.FlinkJobServerDriver" not in manifest:
    sys.exit(f"{jar} is not a self-contained job server (missing {missing or 'Main-Class'})")
print(version.strip())
EOF
}

setup_jobserver() {
  local pom key cache java_version
  pom="$(jobserver_pom)"
  key="$(printf '%s\n' "$pom" | sha256sum | cut -c1-16)"
  cache="$CACHE_DIR/flink-job-server/$key"
  if [ -s "$JAR" ] && [ "$(cat "$JS_DIR/KEY" 2>/dev/null)" = "$key" ]; then
    log "job server already present: $JAR ($(cat "$JS_DIR/SOURCE"))"
    return 0
  fi
  command -v java >/dev/null || die "Java (17) is needed to run Flink and Beam's job server"
  mkdir -p "$JS_DIR"
  rm -rf "$JS_DIR/lib" "$JS_DIR/official" "$JS_DIR/MANIFEST.MF" "$JS_DIR"/mvn-*.log  # earlier layouts
  if [ ! -s "$cache/job-server.jar" ]; then
    command -v mvn >/dev/null || die "Maven (mvn) is needed to build Beam's Flink job server"
    local build="$JS_DIR/build" started=$SECONDS
    rm -rf "$build" && mkdir -p "$build"
    printf '%s\n' "$pom" >"$build/pom.xml"
    log "building the job server: org.apache.beam:beam-runners-flink-${FLINK_MINOR}:${BEAM_JAVA_VERSION} shaded into one jar (Maven; minutes the first time)"
    if ! (cd "$build" && mvn -B -q package) >"$JS_DIR/build.log" 2>&1; then
      sed 's/\x1b\[[0-9;]*m//g' "$JS_DIR/build.log" | grep -m3 '^\[ERROR\] .' >&2 || tail -n 30 "$JS_DIR/build.log" >&2
      die "could not build the Beam ${BEAM_JAVA_VERSION} Flink ${FLINK_MINOR} job server (Maven; log: $JS_DIR/build.log)"
    fi
    local built="$build/target/beam-flink-${FLINK_MINOR}-job-server-${BEAM_JAVA_VERSION}.jar"
    java_version="$(check_jar "$built")" || die "the built jar is not a usable job server"
    mkdir -p "$cache"
    cp "$built" "$cache/job-server.jar.tmp" && mv "$cache/job-server.jar.tmp" "$cache/job-server.jar"
    printf '%s\n' "$pom" >"$cache/pom.xml"
    log "built in $((SECONDS - started)) s: $(du -m "$cache/job-server.jar" | cut -f1) MB, cached in $cache"
    rm -rf "$build"
  fi
  java_version="$(check_jar "$cache/job-server.jar")" || die "cached job server $cache is broken: delete it and rerun setup"
  [ "$java_version" = "$BEAM_JAVA_VERSION" ] || die "job server holds Beam $java_version, expected $BEAM_JAVA_VERSION"
  cp "$cache/job-server.jar" "$JAR.tmp" && mv "$JAR.tmp" "$JAR"
  echo "$key" >"$JS_DIR/KEY"
  echo "Beam Java ${java_version} (beam-runners-flink-${FLINK_MINOR}, shaded; sha256 $(sha256sum "$JAR" | cut -c1-16))" >"$JS_DIR/SOURCE"
  log "job server: $JAR: $(cat "$JS_DIR/SOURCE"), driving the Beam Python $(beam_python_version) SDK"
}

# The versions that meet in a Flink run: printed as shell assignments.
cmd_versions() {
  [ -s "$JAR" ] || die "no job server yet: run 'scripts/flink.sh setup'"
  echo "FLINK_VERSION=$FLINK_VERSION"
  echo "BEAM_JAVA_VERSION=$(check_jar "$JAR")"
  echo "BEAM_PYTHON_VERSION=$(beam_python_version)"
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
  jobserver) setup_jobserver ;;
  versions) cmd_versions ;;
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  jar) [ -s "$JAR" ] || die "no job server yet: run 'scripts/flink.sh setup'"; echo "$JAR" ;;
  env) cmd_env ;;
  *) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
