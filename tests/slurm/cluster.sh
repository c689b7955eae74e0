#!/usr/bin/env bash
# A real one-node SLURM cluster on localhost, for the tests and for trying profiles/slurm by hand.
#
#   bash tests/slurm/cluster.sh start    # install missing Debian packages, start all daemons, wait until ready
#   bash tests/slurm/cluster.sh stop     # cancel all jobs, stop every daemon by its pid file
#   bash tests/slurm/cluster.sh status   # exit 0 = running, 3 = stopped, 1 = partly running
#
# What you get: partitions `cpu` (Default=YES) and `gpu` (no real GPUs: jobs sent there run normally,
# with SLURM_JOB_PARTITION=gpu); account `root` (root's default); `sacct` works (slurmdbd on a private
# MariaDB). Daemons: munged, mariadbd (127.0.0.1:$QUADPIPE_SLURM_DB_PORT), slurmdbd, slurmctld, slurmd.
#
# start and stop are idempotent (start when running / stop when stopped: success) and serialised by
# a lock, so parallel callers (pytest-xdist workers) are safe. If something does not come up, start
# prints one line "cluster.sh: ERROR: ... (see <log file>)" to stderr, stops what it started and
# exits 1. Timings here: start ~2 s (first start in an empty state dir ~4 s, + ~20 s to install
# packages once), stop ~2 s.
#
# Environment:
#   QUADPIPE_SLURM_DIR        state, spool, pid, log and database files (default /tmp/quadpipe-slurm).
#                             Kept by stop (logs, accounting history); `rm -rf` it after stop for a
#                             fresh cluster.
#   QUADPIPE_SLURM_DB_PORT    MariaDB port on 127.0.0.1 (default 3307). SLURM uses 6817-6819.
#   QUADPIPE_SLURM_TIMEOUT    seconds to wait for each daemon (default 30).
#   QUADPIPE_SLURM_WAIT_SCHED=1  also wait for slurmctld's first scheduling pass (+~2.5 s). Without
#                             it, jobs submitted in the first ~3 s after start stay PENDING until then.
#
# Needs root and apt-get (Debian 12: Slurm 22.05). The configs must be /etc/slurm/slurm.conf and
# /etc/slurm/slurmdbd.conf (the jobstep plugin drops SLURM_CONF before srun); a slurm.conf that this
# script did not write is never overwritten. munged uses the standard /run/munge socket; an already
# running munged is reused (and then not stopped).

set -u -o pipefail
export LC_ALL=C

DIR=${QUADPIPE_SLURM_DIR:-/tmp/quadpipe-slurm}
DB_PORT=${QUADPIPE_SLURM_DB_PORT:-3307}
TIMEOUT=${QUADPIPE_SLURM_TIMEOUT:-30}
CLUSTER=quadpipe
CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
MARKER="# quadpipe-slurm test cluster, written by tests/slurm/cluster.sh"
PACKAGES="slurmctld slurmd slurm-client munge slurmdbd mariadb-server"

RUN=$DIR/run LOG=$DIR/log DB=$DIR/mysql MUNGE_DIR=$DIR/munge
MYSQL_SOCK=$DB/mysqld.sock
STARTING=0

unset SLURM_CONF   # clients and daemons must use /etc/slurm/slurm.conf (see above)

say() { echo "cluster.sh: $*"; }
die() {
    echo "cluster.sh: ERROR: $*" >&2
    if ((STARTING)); then STARTING=0; stop_all >/dev/null 2>&1; fi
    exit 1
}

# True if the process exists and is not a zombie (daemons are reparented to PID 1, which may reap
# them late, and kill -0 succeeds on a zombie).
alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != [ZX] ]]
}

# Print the pid from a pid file if that process is alive and runs the expected program.
live_pid() {
    local pidfile=$1 name=$2 pid
    [[ -r $pidfile ]] || return 1
    pid=$(<"$pidfile") || return 1
    [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name"* ]] || return 1
    echo "$pid"
}

# spawn PIDFILE NAME LOGFILE CMD... : start a daemon fully detached (own session, no inherited
# stdio or lock fd: a pytest subprocess.run(capture_output=True) would otherwise wait for the
# daemons to exit). Early output of the daemons goes to $LOG/spawn.log.
SPAWN_PID="" SPAWN_PIDFILE="" SPAWN_NAME="" SPAWN_LOG=""
spawn() {
    SPAWN_PIDFILE=$1 SPAWN_NAME=$2 SPAWN_LOG=$3
    shift 3
    rm -f "$SPAWN_PIDFILE"
    setsid "$@" </dev/null >>"$LOG/spawn.log" 2>&1 9>&- &
    SPAWN_PID=$!
}

# Fail fast if the daemon last spawned has died (its launcher failed, or it exited after forking).
check_spawned() {
    [[ -n $SPAWN_PIDFILE ]] || return 0
    if [[ -n $SPAWN_PID ]] && ! alive "$SPAWN_PID"; then
        wait "$SPAWN_PID" 2>/dev/null
        local rc=$?
        ((rc == 0)) || die "$SPAWN_NAME failed to start, exit status $rc (see $SPAWN_LOG and $LOG/spawn.log)"
        SPAWN_PID=""                          # forked into the background: watch its pid file now
    fi
    if [[ -z $SPAWN_PID && -s $SPAWN_PIDFILE ]] && [[ -z $(live_pid "$SPAWN_PIDFILE" "$SPAWN_NAME") ]]; then
        die "$SPAWN_NAME exited during start-up (see $SPAWN_LOG)"
    fi
}

# wait_for WHAT LOGFILE CMD... : poll CMD (each try limited to 5 s) every 0.1 s until it succeeds;
# die after TIMEOUT seconds or as soon as the daemon being started has died.
wait_for() {
    local what=$1 logfile=$2
    shift 2
    local end=$((SECONDS + TIMEOUT))
    until timeout 5 "$@" >/dev/null 2>&1; do
        check_spawned
        ((SECONDS < end)) || die "$what did not come up within ${TIMEOUT}s (see $logfile)"
        sleep 0.1
    done
}

STOPPED=0
stop_pidfile() {
    local pidfile=$1 name=$2 pid i
    pid=$(live_pid "$pidfile" "$name") || { rm -f "$pidfile"; return 0; }
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 150; i++)); do          # up to 15 s, then SIGKILL
        alive "$pid" || break
        sleep 0.1
    done
    alive "$pid" && kill -KILL "$pid" 2>/dev/null
    rm -f "$pidfile"
    STOPPED=$((STOPPED + 1))
    say "stopped $name (pid $pid)"
}

# --------------------------------------------------------------------------------------------
install_packages() {
    local c missing=0
    for c in slurmctld slurmd slurmdbd sbatch sacct sacctmgr munged munge mariadbd mariadb-install-db; do
        command -v "$c" >/dev/null 2>&1 || missing=1
    done
    ((missing)) || return 0
    command -v apt-get >/dev/null || die "SLURM is not installed and apt-get is missing; install: $PACKAGES"
    say "installing Debian packages (once): $PACKAGES"
    # shellcheck disable=SC2086
    { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PACKAGES
    } >>"$LOG/apt.log" 2>&1 || die "apt-get install failed (see $LOG/apt.log)"
}

# A cluster started from another QUADPIPE_SLURM_DIR would hold the same ports and /etc/slurm.
check_other_cluster() {
    local other
    [[ -r $CONF ]] || return 0
    other=$(sed -n 's/^# quadpipe-slurm-dir: //p' "$CONF")
    if [[ -n $other && $other != "$DIR" && -n $(live_pid "$other/run/slurmctld.pid" slurmctld) ]]; then
        die "a quadpipe test cluster from $other is running; stop it first (QUADPIPE_SLURM_DIR=$other $0 stop)"
    fi
}

write_configs() {
    local host cpus mem
    host=$(hostname -s)
    cpus=$(nproc)
    mem=$(free -m | awk '/^Mem:/ {print $2}')
    mem=$((mem > 1024 ? mem - 512 : mem / 2))

    mkdir -p /etc/slurm
    if [[ -e $CONF ]] && ! grep -qF "$MARKER" "$CONF"; then
        die "$CONF exists and was not written by this script; refusing to overwrite it"
    fi
    cat >"$CONF.tmp" <<EOF
$MARKER
# quadpipe-slurm-dir: $DIR
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=6817
SlurmdPort=6818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
MinJobAge=300
ReturnToService=2
KillWait=5
Waittime=0
InactiveLimit=0
MailProg=/bin/true
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=cpu Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$host Default=NO MaxTime=INFINITE State=UP
EOF
    mv -f "$CONF.tmp" "$CONF"

    (umask 077 && cat >"$DBD_CONF.tmp" <<EOF
$MARKER
AuthType=auth/munge
DbdAddr=127.0.0.1
DbdHost=localhost
DbdPort=6819
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=quadpipe
StorageLoc=slurm_acct_db
EOF
    )
    chmod 600 "$DBD_CONF.tmp"                 # slurmdbd refuses a group/world-readable slurmdbd.conf
    mv -f "$DBD_CONF.tmp" "$DBD_CONF"
}

# --------------------------------------------------------------------------------------------
start_munge() {
    munge -n </dev/null >/dev/null 2>&1 && return 0      # ours or a system munged: reuse it
    mkdir -p /run/munge "$MUNGE_DIR"
    chown munge:munge /run/munge "$MUNGE_DIR"
    chmod 755 /run/munge
    chmod 700 "$MUNGE_DIR"
    if [[ ! -s /etc/munge/munge.key ]]; then
        mungekey --create --keyfile=/etc/munge/munge.key >>"$LOG/spawn.log" 2>&1 ||
            die "cannot create /etc/munge/munge.key (see $LOG/spawn.log)"
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    spawn "$MUNGE_DIR/munged.pid" munged "$MUNGE_DIR/munged.log" \
        runuser -u munge -- munged --pid-file="$MUNGE_DIR/munged.pid" \
        --log-file="$MUNGE_DIR/munged.log" --seed-file="$MUNGE_DIR/munged.seed"
    wait_for munged "$MUNGE_DIR/munged.log" munge -n
}

start_mariadb() {
    if [[ -z $(live_pid "$RUN/mariadbd.pid" mariadbd) ]]; then
        if [[ ! -e $DB/.initialized ]]; then
            rm -rf "$DB/data"
            mkdir -p "$DB/data"
            mariadb-install-db --no-defaults --user=root --datadir="$DB/data" --skip-test-db \
                --auth-root-authentication-method=socket --innodb-log-file-size=16M \
                >>"$LOG/mariadb-install.log" 2>&1 ||
                die "mariadb-install-db failed (see $LOG/mariadb-install.log)"
            touch "$DB/.initialized"
        fi
        spawn "$RUN/mariadbd.pid" mariadbd "$LOG/mariadb.log" \
            mariadbd --no-defaults --user=root --datadir="$DB/data" --socket="$MYSQL_SOCK" \
            --pid-file="$RUN/mariadbd.pid" --port="$DB_PORT" --bind-address=127.0.0.1 \
            --log-error="$LOG/mariadb.log" --skip-log-bin --innodb-log-file-size=16M \
            --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900
        wait_for "mariadbd (port $DB_PORT)" "$LOG/mariadb.log" \
            mariadb-admin --no-defaults --socket="$MYSQL_SOCK" ping
    fi
    mariadb --no-defaults --socket="$MYSQL_SOCK" >>"$LOG/mariadb.log" 2>&1 <<'EOF' ||
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'quadpipe';
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'quadpipe';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
EOF
        die "cannot create the slurm database and user in MariaDB (see $LOG/mariadb.log)"
}

start_slurmdbd() {
    if [[ -z $(live_pid "$RUN/slurmdbd.pid" slurmdbd) ]]; then
        spawn "$RUN/slurmdbd.pid" slurmdbd "$LOG/slurmdbd.log" slurmdbd
        wait_for "slurmdbd (port 6819)" "$LOG/slurmdbd.log" bash -c 'exec 3<>/dev/tcp/127.0.0.1/6819'
    fi
    # Register the cluster once per database (this also creates account root and user root with
    # default account root). The marker lives with the database. Each sacctmgr call costs ~0.35 s.
    [[ -e $DB/.cluster-registered ]] && return 0
    wait_for slurmdbd "$LOG/slurmdbd.log" sacctmgr -n show cluster
    if ! sacctmgr -n -P show cluster format=cluster 2>/dev/null | grep -qx "$CLUSTER"; then
        sacctmgr -i add cluster "$CLUSTER" >>"$LOG/slurmdbd.log" 2>&1 ||
            die "sacctmgr add cluster $CLUSTER failed (see $LOG/slurmdbd.log)"
    fi
    if ! sacctmgr -n -P show assoc cluster="$CLUSTER" user=root format=account 2>/dev/null | grep -qx root; then
        sacctmgr -i add user root account=root cluster="$CLUSTER" >>"$LOG/slurmdbd.log" 2>&1 ||
            die "sacctmgr add user root failed (see $LOG/slurmdbd.log)"
    fi
    touch "$DB/.cluster-registered"
}

start_slurmctld() {
    [[ -n $(live_pid "$RUN/slurmctld.pid" slurmctld) ]] && return 0
    local from
    from=$(($(stat -c %s "$LOG/slurmctld.log" 2>/dev/null || echo 0) + 1))
    spawn "$RUN/slurmctld.pid" slurmctld "$LOG/slurmctld.log" slurmctld -c -i
    # scontrol ping retries for ~1 s while the port is closed, and a TCP probe logs an error in
    # slurmctld.log: watch the log for this start's "Running as primary controller" instead.
    wait_for slurmctld "$LOG/slurmctld.log" \
        bash -c "tail -c +$from '$LOG/slurmctld.log' | grep -q 'Running as primary controller'"
    wait_for slurmctld "$LOG/slurmctld.log" bash -c 'scontrol ping | grep -q UP'
}

start_slurmd() {
    local host
    host=$(hostname -s)
    if [[ -z $(live_pid "$RUN/slurmd.pid" slurmd) ]]; then
        spawn "$RUN/slurmd.pid" slurmd "$LOG/slurmd.log" slurmd
    fi
    # idle (or busy, if jobs already run); not unknown/down/drained
    wait_for "slurmd (node $host)" "$LOG/slurmd.log" \
        bash -c "sinfo -h -n '$host' -o %T | grep -qxE 'idle|mixed|allocated|completing'"
}

# --------------------------------------------------------------------------------------------
all_running() {
    [[ -r $CONF ]] && grep -qxF "# quadpipe-slurm-dir: $DIR" "$CONF" &&
        munge -n </dev/null >/dev/null 2>&1 &&
        [[ -n $(live_pid "$RUN/mariadbd.pid" mariadbd) ]] &&
        [[ -n $(live_pid "$RUN/slurmdbd.pid" slurmdbd) ]] &&
        [[ -n $(live_pid "$RUN/slurmctld.pid" slurmctld) ]] &&
        [[ -n $(live_pid "$RUN/slurmd.pid" slurmd) ]]
}

lock() {
    mkdir -p "$DIR" || die "cannot create $DIR"
    exec 9>"$DIR/.lock"
    flock -w 120 9 || die "timed out waiting for $DIR/.lock (another cluster.sh running?)"
}

stop_all() {
    # Cancel jobs first, so that no slurmstepd or job processes outlive slurmd.
    if [[ -n $(live_pid "$RUN/slurmctld.pid" slurmctld) ]]; then
        local jobs i
        jobs=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ')
        if [[ -n ${jobs// /} ]]; then
            # shellcheck disable=SC2086
            scancel $jobs >/dev/null 2>&1
            for ((i = 0; i < 100; i++)); do      # KillWait=5: wait up to 10 s
                [[ -z $(squeue -h -t R,CG -o %A 2>/dev/null) ]] && break
                sleep 0.1
            done
        fi
    fi
    stop_pidfile "$RUN/slurmd.pid" slurmd
    stop_pidfile "$RUN/slurmctld.pid" slurmctld
    stop_pidfile "$RUN/slurmdbd.pid" slurmdbd
    stop_pidfile "$RUN/mariadbd.pid" mariadbd
    stop_pidfile "$MUNGE_DIR/munged.pid" munged   # only a munged this script started
}

cmd_start() {
    [[ $(id -u) == 0 ]] || die "start must run as root (the daemons run as root)"
    lock
    if all_running; then
        say "already running (dir $DIR)"
        return 0
    fi
    local t0=$EPOCHREALTIME
    mkdir -p "$RUN" "$LOG" "$DB" "$DIR/state" "$DIR/spool"
    chmod 755 "$DIR"
    install_packages
    check_other_cluster
    write_configs
    STARTING=1
    start_munge
    start_mariadb
    start_slurmdbd
    start_slurmctld
    start_slurmd
    SPAWN_PID="" SPAWN_PIDFILE=""
    wait_for "accounting (sacct via slurmdbd)" "$LOG/slurmdbd.log" sacct -n -X -S now
    if [[ ${QUADPIPE_SLURM_WAIT_SCHED:-0} == 1 ]]; then
        wait_for "slurmctld scheduler" "$LOG/slurmctld.log" \
            bash -c "sdiag | awk '/^Main schedule/ {m = 1} m && /Total cycles:/ {exit !(\$3 > 0)}'"
    fi
    STARTING=0
    say "running: partitions cpu (default), gpu; account root; dir $DIR" \
        "(up in $(awk "BEGIN {printf \"%.1f\", $EPOCHREALTIME - $t0}") s)"
}

cmd_stop() {
    [[ $(id -u) == 0 ]] || die "stop must run as root"
    [[ -d $DIR ]] || { say "not running"; return 0; }
    lock
    stop_all
    if ((STOPPED)); then say "stopped (logs kept in $LOG)"; else say "not running"; fi
}

cmd_status() {
    local n=0 name pid
    for name in mariadbd slurmdbd slurmctld slurmd; do
        if pid=$(live_pid "$RUN/$name.pid" "$name"); then
            echo "$name: running (pid $pid)"
            n=$((n + 1))
        else
            echo "$name: stopped"
        fi
    done
    if pid=$(live_pid "$MUNGE_DIR/munged.pid" munged); then
        echo "munged: running (pid $pid)"
    elif munge -n </dev/null >/dev/null 2>&1; then
        echo "munged: running (not started by this script)"
    else
        echo "munged: stopped"
    fi
    if all_running; then
        sinfo -h -o '%P %T %D' 2>/dev/null | sed 's/^/partition: /'
        return 0
    fi
    ((n == 0)) && return 3
    return 1
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 start|stop|status   (state dir: \$QUADPIPE_SLURM_DIR, default /tmp/quadpipe-slurm)" >&2
        exit 2
        ;;
esac
