# shellcheck shell=bash disable=SC2034  # settings here are used by services/svc
# Shared helpers for services/svc: install and run a real Apache Kafka (KRaft)
# broker and a real Neo4j Community server from Maven Central jars, without
# Docker. Sourced by services/svc; not meant to be executed directly.
#
# Everything listens on 127.0.0.1 only. Processes are tracked by pid files and
# only those PIDs are ever signalled.

KAFKA_VERSION=4.1.1
NEO4J_VERSION=5.26.0

SVC_HOME=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)   # .../services
REPO_ROOT=$(dirname "$SVC_HOME")
SVC_CACHE=${LINEAGE_SERVICES_CACHE:-${HOME:?HOME is not set}/.cache/lineage-services}
SVC_STATE=${LINEAGE_SERVICES_DIR:-$REPO_ROOT/.services}
[[ $SVC_CACHE == /* ]] || SVC_CACHE=$PWD/$SVC_CACHE   # the servers need absolute paths
[[ $SVC_STATE == /* ]] || SVC_STATE=$PWD/$SVC_STATE

KAFKA_PORT=${LINEAGE_KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${LINEAGE_KAFKA_CONTROLLER_PORT:-19093}
NEO4J_BOLT_PORT=${LINEAGE_NEO4J_BOLT_PORT:-17687}
SVC_TIMEOUT=${LINEAGE_SERVICES_TIMEOUT:-120}      # readiness timeout, seconds
SVC_STOP_TIMEOUT=${LINEAGE_SERVICES_STOP_TIMEOUT:-60} # SIGTERM grace, seconds
HOST=127.0.0.1

if [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then
    JAVA=$JAVA_HOME/bin/java
    JAVAC=$JAVA_HOME/bin/javac
else
    JAVA=java
    JAVAC=javac
fi
# Flags for the short-lived helper JVMs (storage format, topic listing):
# they start faster with the C1 compiler only and a small serial heap.
TOOL_JVM_OPTS=(-Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto)

SERVICES=(kafka neo4j)

# ---------------------------------------------------------------- output ---
log() { printf '[svc] %s\n' "$*" >&2; }
die() { printf '[svc] ERROR: %s\n' "$*" >&2; exit 1; }

now_ms() { date +%s%3N; }
# elapsed START_MS -> "12.3s"
elapsed() {
    local ms=$(( $(now_ms) - $1 ))
    printf '%d.%ds' $((ms / 1000)) $(((ms % 1000) / 100))
}

check_name() {
    case $1 in
        kafka|neo4j) ;;
        *) die "unknown service '$1' (expected kafka, neo4j or all)" ;;
    esac
}

# expand "all"/"" into the list of services
expand_names() {
    if [[ $# -eq 0 || $1 == all ]]; then
        printf '%s\n' "${SERVICES[@]}"
    else
        local n
        for n in "$@"; do check_name "$n"; printf '%s\n' "$n"; done
    fi
}

need_java() {
    command -v "$JAVA" >/dev/null 2>&1 || die "java not found (Java 17+ is required; set JAVA_HOME)"
    local v
    v=$("$JAVA" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)
    [[ -n $v && $v -ge 17 ]] || die "Java 17+ is required, found: $("$JAVA" -version 2>&1 | head -n1)"
}

# ----------------------------------------------------------------- paths ---
state_dir() { printf '%s/%s' "$SVC_STATE" "$1"; }
pid_file()  { printf '%s/%s/%s.pid' "$SVC_STATE" "$1" "$1"; }
log_file()  { printf '%s/%s/%s.log' "$SVC_STATE" "$1" "$1"; }
cache_dir() { printf '%s/%s' "$SVC_CACHE" "$1"; }

# The string that must appear in /proc/<pid>/cmdline for a pid file to be
# believed (guards against a recycled PID).
proc_marker() {
    case $1 in
        kafka) printf 'kafka.Kafka' ;;
        neo4j) printf 'LineageNeo4j' ;;
    esac
}

# ------------------------------------------------------------- processes ---
# pid_matches PID MARKER: the PID is alive (not a zombie) and is our server
pid_matches() {
    local pid=$1 marker=$2 cmd
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/cmdline ]] || return 1
    cmd=$(tr '\0' ' ' </proc/"$pid"/cmdline 2>/dev/null) || return 1
    [[ $cmd == *"$marker"* ]]
}

read_pid() {
    local f
    f=$(pid_file "$1")
    [[ -f $f ]] || return 1
    head -n1 "$f" 2>/dev/null
}

# running_pid NAME: prints the PID and succeeds if NAME is running
running_pid() {
    local pid
    pid=$(read_pid "$1") || return 1
    pid_matches "$pid" "$(proc_marker "$1")" || return 1
    printf '%s\n' "$pid"
}

# proc_alive PID: the process still runs. A zombie whose threads have all
# exited counts as gone; a zombie leader with live threads (a JVM exiting
# from another thread) does not.
proc_alive() {
    local stat tasks
    stat=$(cat /proc/"$1"/stat 2>/dev/null) || return 1
    stat=${stat##*) }
    case ${stat:0:1} in
        '') return 1 ;;
        Z|X)
            tasks=$(find /proc/"$1"/task -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
            [[ $tasks -gt 1 ]] ;;
        *) return 0 ;;
    esac
}

# wait_gone PID SECONDS: wait until the process has exited, then give its
# parent (init, for a server started by an earlier svc call) a few seconds to
# reap it so that the PID disappears from ps.
wait_gone() {
    local pid=$1 deadline=$(( $(date +%s) + $2 )) i
    while proc_alive "$pid"; do
        (( $(date +%s) >= deadline )) && return 1
        sleep 0.2
    done
    wait "$pid" 2>/dev/null || true   # reaps it if it is our own child
    for ((i = 0; i < 25; i++)); do
        [[ -e /proc/$pid ]] || break
        sleep 0.2
    done
    return 0
}

# reap_child PID: succeeds once our background child PID has exited, and reaps it. Never
# blocks: `wait` is only called on a process that is already gone. A child that is alive but
# not yet exec'd into the server (its cmdline is still this script's) is running, not gone.
reap_child() {
    local pid=$1
    proc_alive "$pid" && return 1
    wait "$pid" 2>/dev/null || true
    return 0
}

# stop_child PID SECONDS: stop a server this svc call started (our own unreaped child, so the
# PID cannot have been recycled, even before it exec'd into the JVM): SIGTERM, SIGKILL after
# SECONDS, reap. Bounded.
stop_child() {
    local pid=$1
    reap_child "$pid" && return 0
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" "$2"; then
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 10 || log "pid $pid did not exit even after SIGKILL"
    fi
}

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT
port_open() {
    # shellcheck disable=SC2016  # $0/$1 expand in the child shell
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$HOST" "$1" 2>/dev/null
}

# Serialise install/start/stop of one service across concurrent svc calls.
# take_lock FD FILE: FD 8 guards an install (per service, in the cache), FD 9
# a start/stop (per service, in the state dir). Servers are launched with both
# descriptors closed so that they never inherit a lock.
take_lock() {
    mkdir -p "$(dirname "$2")"
    case $1 in
        8) exec 8>>"$2" && flock -w 900 8 ;;
        9) exec 9>>"$2" && flock -w 900 9 ;;
        *) false ;;
    esac || die "could not lock $2"
}
release_lock() {
    case $1 in
        8) exec 8>&- ;;
        9) exec 9>&- ;;
    esac
}

tail_log() {
    local f=$1 n=${2:-40}
    if [[ -s $f ]]; then
        printf '[svc] ---- last %d lines of %s ----\n' "$n" "$f" >&2
        tail -n "$n" "$f" >&2
        printf '[svc] ----\n' >&2
    fi
}

# rotate_log FILE: keep one previous log as FILE.prev
rotate_log() {
    if [[ -s $1 ]]; then mv -f "$1" "$1.prev"; fi
    : >"$1"
}

# --------------------------------------------------------------- install ---
# The cache marker <cache>/<name>/.installed holds
#   libs=<sha256 of pom.xml>       the jars in libs/ were resolved from it
#   jars=<n>                       how many jars that gave
#   classes=<sha256 of launcher>   (neo4j) classes/ was compiled from it
# It is written only after a complete step, so an interrupted install is
# redone. Jars and launcher are fingerprinted separately: editing
# LineageNeo4j.java only recompiles it.
sha_of() { sha256sum "$1" | cut -d' ' -f1; }
marker_get() { sed -n "s/^$2=//p" "$(cache_dir "$1")/.installed" 2>/dev/null | head -n1; }

libs_ok() {
    local c count
    c=$(cache_dir "$1")
    [[ $(marker_get "$1" libs) == "$(sha_of "$SVC_HOME/$1/pom.xml")" ]] || return 1
    count=$(marker_get "$1" jars)
    [[ -n $count && $(find "$c/libs" -maxdepth 1 -name '*.jar' 2>/dev/null | wc -l) -eq $count ]]
}

classes_ok() {
    [[ $1 == neo4j ]] || return 0
    [[ -f $(cache_dir neo4j)/classes/LineageNeo4j.class ]] || return 1
    [[ $(marker_get neo4j classes) == "$(sha_of "$SVC_HOME/neo4j/LineageNeo4j.java")" ]]
}

# installed NAME: the cache holds a complete install for the current inputs
installed() { libs_ok "$1" && classes_ok "$1"; }

write_marker() {
    local name=$1 libs=$2 jars=$3 classes=$4 c
    c=$(cache_dir "$name")
    {
        printf 'libs=%s\njars=%s\n' "$libs" "$jars"
        [[ -n $classes ]] && printf 'classes=%s\n' "$classes"
        printf 'updated=%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    } >"$c/.installed.tmp"
    mv -f "$c/.installed.tmp" "$c/.installed"
}

# replace_dir NEW DIR: put NEW in place of DIR. The old DIR is only renamed
# (DIR.old.*), since a running server may still read jars from it; renamed
# copies that no process holds open any more are deleted.
replace_dir() {
    local new=$1 dir=$2 old held
    if [[ -e $dir ]]; then
        mv "$dir" "$dir.old.$(date +%s).$$"
    fi
    mv "$new" "$dir"
    for old in "$dir".old.*; do
        [[ -d $old ]] || continue
        held=$(find /proc/[0-9]*/fd -lname "$old/*" -print -quit 2>/dev/null || true)
        if [[ -z $held ]]; then
            rm -rf "$old"
        fi
    done
}

install_one() {
    local name=$1 c t0 tmp count version
    c=$(cache_dir "$name")
    if installed "$name"; then
        log "$name: already installed in $c"
        return 0
    fi
    take_lock 8 "$SVC_CACHE/.$name.install.lock"
    if installed "$name"; then       # someone else finished it meanwhile
        release_lock 8
        log "$name: already installed in $c"
        return 0
    fi
    need_java
    t0=$(now_ms)
    mkdir -p "$c"
    if ! libs_ok "$name"; then
        command -v mvn >/dev/null 2>&1 || die "mvn (Maven 3) not found; it is needed to fetch the jars"
        version=$KAFKA_VERSION
        [[ $name == neo4j* ]] && version=$NEO4J_VERSION
        log "$name $version: resolving jars from Maven Central into $c/libs ..."
        tmp=$c/libs.tmp.$$
        rm -rf "$tmp"
        if ! mvn -q -B -Dstyle.color=never -f "$SVC_HOME/$name/pom.xml" \
                dependency:copy-dependencies -DincludeScope=runtime -DexcludeTypes=pom \
                -DoutputDirectory="$tmp" >"$c/mvn.log" 2>&1; then
            tail_log "$c/mvn.log" 30
            rm -rf "$tmp"
            die "$name: mvn dependency:copy-dependencies failed (full output: $c/mvn.log)"
        fi
        count=$(find "$tmp" -maxdepth 1 -name '*.jar' | wc -l)
        [[ $count -gt 0 ]] || die "$name: no jars were resolved"
        replace_dir "$tmp" "$c/libs"
        write_marker "$name" "$(sha_of "$SVC_HOME/$name/pom.xml")" "$count" ""
        log "$name: $count jars ($(du -sh "$c/libs" | cut -f1)) in $(elapsed "$t0")"
    fi
    if ! classes_ok "$name"; then
        log "$name: compiling LineageNeo4j.java ..."
        tmp=$c/classes.tmp.$$
        rm -rf "$tmp"
        mkdir -p "$tmp"
        if ! "$JAVAC" -nowarn -d "$tmp" -cp "$c/libs/*" "$SVC_HOME/neo4j/LineageNeo4j.java"; then
            rm -rf "$tmp"
            die "$name: javac failed"
        fi
        replace_dir "$tmp" "$c/classes"
        write_marker "$name" "$(marker_get "$name" libs)" "$(marker_get "$name" jars)" \
            "$(sha_of "$SVC_HOME/neo4j/LineageNeo4j.java")"
    fi
    release_lock 8
    log "$name: installed in $c ($(elapsed "$t0"))"
}

ensure_installed() {
    installed "$1" || install_one "$1"
}

# ---------------------------------------------------------------- neo4j ---
# neo4j_password: LINEAGE_NEO4J_PASSWORD, else a random one kept (mode 600)
# in <services dir>/neo4j/password, generated on first use.
neo4j_password() {
    if [[ -n ${LINEAGE_NEO4J_PASSWORD:-} ]]; then
        [[ ${#LINEAGE_NEO4J_PASSWORD} -ge 8 ]] \
            || die "LINEAGE_NEO4J_PASSWORD is too short: Neo4j requires at least 8 characters"
        printf '%s' "$LINEAGE_NEO4J_PASSWORD"
        return 0
    fi
    local d f pw
    d=$(state_dir neo4j)
    f=$d/password
    if [[ ! -s $f ]]; then
        mkdir -p "$d"
        pw=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
        [[ ${#pw} -eq 32 ]] || die "could not generate a password"
        (umask 077 && printf '%s\n' "$pw" >"$f.tmp.$$") && mv -f "$f.tmp.$$" "$f"
    fi
    chmod 600 "$f"
    head -n1 "$f"
}
