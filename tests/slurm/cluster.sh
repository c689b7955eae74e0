#!/usr/bin/env bash
# A real one-node SLURM cluster on localhost, for tests and for trying the slurm profile by hand.
#
#   bash tests/slurm/cluster.sh start    # install missing Debian packages, start everything, wait until ready
#   bash tests/slurm/cluster.sh stop     # cancel jobs, stop every daemon by its pid file
#   bash tests/slurm/cluster.sh status   # exit 0 = running, 3 = stopped, 1 = partly running / unhealthy
#
# Daemons: munged, mariadbd (private instance, 127.0.0.1:$QUADPIPE_SLURM_DB_PORT), slurmdbd, slurmctld, slurmd.
# Partitions: cpu (Default=YES) and gpu (no real GPUs; jobs sent there run normally). Account: root.
# `sacct` works (accounting via slurmdbd on MariaDB).
#
# All state, spool, pid, log and database files live under $QUADPIPE_SLURM_DIR (default /tmp/quadpipe-slurm).
# The configs must be at /etc/slurm/{slurm,slurmdbd}.conf (job steps drop SLURM_CONF); an existing
# slurm.conf that this script did not write is never overwritten.
# start/stop are idempotent and serialised with a lock, so parallel callers (pytest-xdist) are safe.
# Needs root and Debian/Ubuntu (apt-get). Ports: 6817-6819 (slurm), $QUADPIPE_SLURM_DB_PORT (default 3307).
# On failure: one line "cluster.sh: ERROR: ... (see <log file>)" on stderr, exit status 1.

set -u -o pipefail

DIR=${QUADPIPE_SLURM_DIR:-/tmp/quadpipe-slurm}
DB_PORT=${QUADPIPE_SLURM_DB_PORT:-3307}
TIMEOUT=${QUADPIPE_SLURM_TIMEOUT:-30}      # seconds to wait for each daemon
CLUSTER=quadpipe
CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
MARKER="# quadpipe-slurm test cluster, written by tests/slurm/cluster.sh"
PACKAGES="slurmctld slurmd slurm-client munge slurmdbd mariadb-server"

RUN=$DIR/run LOG=$DIR/log DB=$DIR/mysql
MYSQL_SOCK=$DB/mysqld.sock

unset SLURM_CONF   # clients and daemons must use /etc/slurm/slurm.conf (see header)

die() { echo "cluster.sh: ERROR: $*" >&2; exit 1; }
say() { echo "cluster.sh: $*"; }

# Wait until "$@" succeeds (polling every 0.1 s) or TIMEOUT passes.
wait_for() {
    local what=$1 logfile=$2; shift 2
    local end=$((SECONDS + TIMEOUT))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < end)) || die "$what did not come up within ${TIMEOUT}s (see $logfile)"
        sleep 0.1
    done
}

# pid from a pid file if that process is alive and is the expected program, else empty.
live_pid() {
    local pidfile=$1 name=$2 pid
    [[ -r $pidfile ]] || return 1
    pid=$(<"$pidfile") || return 1
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name"* ]] || return 1
    echo "$pid"
}

stop_pidfile() {
    local pidfile=$1 name=$2 pid i
    pid=$(live_pid "$pidfile" "$name") || { rm -f "$pidfile"; return 0; }
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 150; i++)); do          # up to 15 s, then SIGKILL
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    rm -f "$pidfile"
    say "stopped $name (pid $pid)"
}

# Start a daemon fully detached: own session, no inherited stdio or lock fd (a pytest
# subprocess.run(capture_output=True) would otherwise wait for the daemons to exit).
spawn() { setsid "$@" </dev/null >>"$LOG/spawn.log" 2>&1 9>&- & }

# --------------------------------------------------------------------------------------------
install_packages() {
    local missing=0 c
    for c in slurmctld slurmd slurmdbd sbatch sacct sacctmgr munged munge mariadbd mariadb-install-db; do
        command -v "$c" >/dev/null 2>&1 || missing=1
    done
    ((missing)) || return 0
    command -v apt-get >/dev/null || die "SLURM packages missing and apt-get not available; install: $PACKAGES"
    say "installing Debian packages: $PACKAGES"
    mkdir -p "$LOG"
    { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PACKAGES
    } >>"$LOG/apt.log" 2>&1 || die "apt-get install failed (see $LOG/apt.log)"
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

    (umask 077; cat >"$DBD_CONF.tmp" <<EOF
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
    chmod 600 "$DBD_CONF.tmp"              # slurmdbd refuses a readable slurmdbd.conf
    mv -f "$DBD_CONF.tmp" "$DBD_CONF"
}

# A cluster started from another QUADPIPE_SLURM_DIR would hold the same ports.
check_other_cluster() {
    local other
    [[ -r $CONF ]] || return 0
    other=$(sed -n 's/^# quadpipe-slurm-dir: //p' "$CONF")
    if [[ -n $other && $other != "$DIR" ]] && [[ -n $(live_pid "$other/run/slurmctld.pid" slurmctld) ]]; then
        die "a quadpipe test cluster from $other is running; stop it first (QUADPIPE_SLURM_DIR=$other $0 stop)"
    fi
}

# --------------------------------------------------------------------------------------------
start_munge() {
    if munge -n </dev/null >/dev/null 2>&1; then return 0; fi   # ours or a system munged: reuse
    mkdir -p /run/munge "$DIR/munge"
    chown munge:munge /run/munge "$DIR/munge"
    chmod 755 /run/munge
    chmod 700 "$DIR/munge"
    if [[ ! -s /etc/munge/munge.key ]]; then
        mungekey --create --keyfile=/etc/munge/munge.key >>"$LOG/munged.log" 2>&1 ||
            die "cannot create /etc/munge/munge.key (see $LOG/munged.log)"
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    rm -f "$DIR/munge/munged.pid"
    spawn runuser -u munge -- munged --force \
        --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" \
        --seed-file="$DIR/munge/munged.seed"
    wait_for munged "$DIR/munge/munged.log" munge -n
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
        spawn mariadbd --no-defaults --user=root --datadir="$DB/data" --socket="$MYSQL_SOCK" \
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
        die "cannot create the slurm database/user in MariaDB (see $LOG/mariadb.log)"
}

start_slurmdbd() {
    if [[ -z $(live_pid "$RUN/slurmdbd.pid" slurmdbd) ]]; then
        spawn slurmdbd
        wait_for slurmdbd "$LOG/slurmdbd.log" sacctmgr -n show cluster
    fi
    if ! sacctmgr -n -P show cluster format=cluster 2>/dev/null | grep -qx "$CLUSTER"; then
        sacctmgr -i add cluster "$CLUSTER" >>"$LOG/slurmdbd.log" 2>&1 ||
            die "sacctmgr add cluster $CLUSTER failed (see $LOG/slurmdbd.log)"
    fi
    # Adding a cluster creates account root and user root (default account root); make sure.
    if ! sacctmgr -n -P show assoc cluster="$CLUSTER" user=root format=account 2>/dev/null | grep -qx root; then
        sacctmgr -i add user root account=root cluster="$CLUSTER" >>"$LOG/slurmdbd.log" 2>&1 ||
            die "sacctmgr add user root failed (see $LOG/slurmdbd.log)"
    fi
}

start_slurmctld() {
    [[ -n $(live_pid "$RUN/slurmctld.pid" slurmctld) ]] && return 0
    spawn slurmctld -c -i
    wait_for slurmctld "$LOG/slurmctld.log" bash -c 'scontrol ping | grep -q UP'
}

start_slurmd() {
    if [[ -z $(live_pid "$RUN/slurmd.pid" slurmd) ]]; then
        spawn slurmd
    fi
    local host; host=$(hostname -s)
    # idle, or mixed/allocated if jobs already run; not down/drained/unknown
    wait_for "slurmd (node $host)" "$LOG/slurmd.log" \
        bash -c "sinfo -h -n '$host' -o %T | grep -qE '^(idle|mixed|allocated|completing)\$'"
}

# --------------------------------------------------------------------------------------------
all_running() {
    munge -n </dev/null >/dev/null 2>&1 &&
        [[ -n $(live_pid "$RUN/mariadbd.pid" mariadbd) ]] &&
        [[ -n $(live_pid "$RUN/slurmdbd.pid" slurmdbd) ]] &&
        [[ -n $(live_pid "$RUN/slurmctld.pid" slurmctld) ]] &&
        [[ -n $(live_pid "$RUN/slurmd.pid" slurmd) ]] &&
        [[ -r $CONF ]] && grep -qxF "# quadpipe-slurm-dir: $DIR" "$CONF"
}

lock() {
    mkdir -p "$DIR" || die "cannot create $DIR"
    exec 9>"$DIR/.lock"
    flock -w 120 9 || die "another cluster.sh holds $DIR/.lock"
}

cmd_start() {
    [[ $(id -u) == 0 ]] || die "must run as root (daemons run as root)"
    lock
    if all_running; then
        say "already running (dir $DIR)"
        return 0
    fi
    local t0=$SECONDS
    install_packages
    check_other_cluster
    mkdir -p "$RUN" "$LOG" "$DB" "$DIR/state" "$DIR/spool"
    chmod 755 "$DIR"
    write_configs
    start_munge
    start_mariadb
    start_slurmdbd
    start_slurmctld
    start_slurmd
    say "running: partitions cpu (default), gpu; account root; dir $DIR ($((SECONDS - t0))s)"
}

cmd_stop() {
    [[ $(id -u) == 0 ]] || die "must run as root"
    [[ -d $DIR ]] || { say "not running"; return 0; }
    lock
    # Cancel jobs first, so that no slurmstepd/job processes outlive slurmd.
    if [[ -n $(live_pid "$RUN/slurmctld.pid" slurmctld) ]]; then
        local jobs i
        jobs=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ')
        if [[ -n ${jobs// /} ]]; then
            scancel $jobs >/dev/null 2>&1
            for ((i = 0; i < 100; i++)); do        # KillWait=5 s; wait up to 10 s
                [[ -z $(squeue -h -t R,CG -o %A 2>/dev/null) ]] && break
                sleep 0.1
            done
        fi
    fi
    stop_pidfile "$RUN/slurmd.pid" slurmd
    stop_pidfile "$RUN/slurmctld.pid" slurmctld
    stop_pidfile "$RUN/slurmdbd.pid" slurmdbd
    stop_pidfile "$RUN/mariadbd.pid" mariadbd
    stop_pidfile "$DIR/munge/munged.pid" munged     # only a munged this script started
    say "stopped (dir $DIR kept: logs in $LOG)"
}

cmd_status() {
    local rc=0 n=0 name pidfile pid
    for name in munged mariadbd slurmdbd slurmctld slurmd; do
        pidfile=$RUN/$name.pid
        [[ $name == munged ]] && pidfile=$DIR/munge/munged.pid
        if pid=$(live_pid "$pidfile" "$name"); then
            echo "$name: running (pid $pid)"; n=$((n + 1))
        elif [[ $name == munged ]] && munge -n </dev/null >/dev/null 2>&1; then
            echo "munged: running (not started by this script)"; n=$((n + 1))
        else
            echo "$name: stopped"
        fi
    done
    if ((n == 5)); then
        sinfo -h -o '%P %T %D' 2>/dev/null | sed 's/^/partition: /'
        all_running || rc=1
    elif ((n == 0)); then
        rc=3
    else
        rc=1
    fi
    return $rc
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 start|stop|status   (state dir: \$QUADPIPE_SLURM_DIR, default /tmp/quadpipe-slurm)" >&2
       exit 2 ;;
esac
