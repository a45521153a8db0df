#!/usr/bin/env bash
# Start a real single-node Slurm on this machine (munge, slurmctld, slurmd; no systemd).
#
#   sudo slurm/local/up.sh        # install if needed, configure, start, wait until the node is idle
#
# Idempotent: running it again leaves running daemons alone (restarting them only when the
# generated configuration changed) and resumes a drained node. Settings (environment):
#   TRACKFLOW_SLURM_CPUS  CPUs declared for the node (default 8, more than the real cores so
#                         several 1-core worker jobs run at once)
#   TRACKFLOW_SLURM_GPUS  fake GPUs declared through gres (default 2, at most 4); they only route
#                         jobs and set CUDA_VISIBLE_DEVICES, there is no device behind them
#   TRACKFLOW_SLURM_MEM_MB  memory declared for the node in MB (default 80 % of the real memory)
#   TRACKFLOW_SLURM_TIMEOUT seconds to wait for the node to become idle (default 60)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CPUS="${TRACKFLOW_SLURM_CPUS:-8}"
GPUS="${TRACKFLOW_SLURM_GPUS:-2}"
TIMEOUT="${TRACKFLOW_SLURM_TIMEOUT:-60}"
CONF_DIR=/etc/slurm
# Device files that exist everywhere; a gres line without File= drains the node.
FAKE_GPU_FILES=(/dev/null /dev/zero /dev/full /dev/urandom)

say() { printf 'slurm/local/up.sh: %s\n' "$*"; }
die() { printf 'slurm/local/up.sh: ERROR: %s\n' "$*" >&2; exit 1; }

[[ "$(id -u)" == 0 ]] || die "must run as root (sudo $0): it installs packages and starts daemons"
(( GPUS >= 1 && GPUS <= ${#FAKE_GPU_FILES[@]} )) || die "TRACKFLOW_SLURM_GPUS=$GPUS: use 1..${#FAKE_GPU_FILES[@]}"

# --- 1. packages -------------------------------------------------------------------------------
PACKAGES=(slurmctld slurmd slurm-client munge)
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
   || ! command -v sinfo >/dev/null || ! command -v munged >/dev/null; then
    say "installing ${PACKAGES[*]} (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >/tmp/slurm-apt.log 2>&1; then
        say "install failed; running apt-get update and retrying"
        apt-get update -q >>/tmp/slurm-apt.log 2>&1 || true
        apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >>/tmp/slurm-apt.log 2>&1 \
            || die "apt-get install ${PACKAGES[*]} failed; see /tmp/slurm-apt.log"
    fi
fi

# --- 2. host name ------------------------------------------------------------------------------
HOST="$(hostname -s)"
if ! getent hosts "$HOST" >/dev/null; then
    say "host name $HOST does not resolve; adding it to /etc/hosts"
    echo "127.0.0.1 $HOST" >>/etc/hosts
fi

# --- 3. munge ----------------------------------------------------------------------------------
if [[ ! -s /etc/munge/munge.key ]]; then
    say "creating /etc/munge/munge.key"
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge /etc/munge/munge.key
chmod 0700 /etc/munge
chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "munged already running"
else
    say "starting munged"
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.1
    done
    munge -n | unmunge >/dev/null || die "munged does not answer; see /var/log/munge/munged.log"
fi

# --- 4. configuration --------------------------------------------------------------------------
REAL_MB="$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')"
MEMORY_MB="${TRACKFLOW_SLURM_MEM_MB:-$(( REAL_MB * 8 / 10 ))}"
DEF_MEM_PER_CPU="$(( MEMORY_MB / CPUS ))"
mkdir -p "$CONF_DIR" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
new_conf="$(mktemp)"
new_gres="$(mktemp)"
trap 'rm -f "$new_conf" "$new_gres"' EXIT
sed -e "s/@HOST@/$HOST/g" -e "s/@NODE@/$HOST/g" -e "s/@CPUS@/$CPUS/g" -e "s/@GPUS@/$GPUS/g" \
    -e "s/@MEMORY_MB@/$MEMORY_MB/g" -e "s/@DEF_MEM_PER_CPU@/$DEF_MEM_PER_CPU/g" \
    "$HERE/slurm.conf.in" >"$new_conf"
{
    echo "# Fake GPUs for routing tests, written by slurm/local/up.sh: no device behind them."
    echo "AutoDetect=off"
    for ((i = 0; i < GPUS; i++)); do
        echo "NodeName=$HOST Name=gpu File=${FAKE_GPU_FILES[$i]}"
    done
} >"$new_gres"
conf_changed=0
if ! cmp -s "$new_conf" "$CONF_DIR/slurm.conf" || ! cmp -s "$new_gres" "$CONF_DIR/gres.conf"; then
    conf_changed=1
    install -m 0644 "$new_conf" "$CONF_DIR/slurm.conf"
    install -m 0644 "$new_gres" "$CONF_DIR/gres.conf"
    say "wrote $CONF_DIR/slurm.conf and gres.conf ($CPUS CPUs, $GPUS fake GPUs, ${MEMORY_MB} MB)"
fi

# --- 5. daemons --------------------------------------------------------------------------------
alive() {  # alive PIDFILE NAME: the pid file names a running process called NAME
    local pid
    [[ -s "$1" ]] || return 1
    pid="$(cat "$1")"
    [[ -r "/proc/$pid/comm" && "$(cat "/proc/$pid/comm")" == "$2" ]]
}
stop() {  # stop PIDFILE NAME
    local pid
    alive "$1" "$2" || return 0
    pid="$(cat "$1")"
    kill "$pid"
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    rm -f "$1"
}
if (( conf_changed )); then
    stop /run/slurmd.pid slurmd
    stop /run/slurmctld.pid slurmctld
fi
if alive /run/slurmctld.pid slurmctld; then
    say "slurmctld already running (pid $(cat /run/slurmctld.pid))"
else
    say "starting slurmctld"
    slurmctld
fi
for _ in $(seq "$(( TIMEOUT * 5 ))"); do
    scontrol ping 2>/dev/null | grep -q 'is UP' && break
    sleep 0.2
done
scontrol ping | grep -q 'is UP' || die "slurmctld does not answer; see /var/log/slurm/slurmctld.log"
if alive /run/slurmd.pid slurmd; then
    say "slurmd already running (pid $(cat /run/slurmd.pid))"
else
    say "starting slurmd"
    slurmd
fi

# --- 6. wait for the node ----------------------------------------------------------------------
deadline=$(( SECONDS + TIMEOUT ))
state=""
while (( SECONDS < deadline )); do
    state="$(sinfo -h -n "$HOST" -o '%t' 2>/dev/null | head -n1)"
    case "$state" in
        idle|mix|alloc) break ;;
        drain*|drng|down*|fail*)
            say "node $HOST is '$state'; resuming it"
            scontrol update nodename="$HOST" state=resume 2>/dev/null || true ;;
    esac
    sleep 0.5
done
case "$state" in
    idle|mix|alloc) ;;
    *) die "node $HOST is '${state:-unknown}' after ${TIMEOUT} s; see /var/log/slurm/slurmd.log and
    scontrol show node $HOST" ;;
esac

say "Slurm is up: node $HOST is $state"
sinfo -o '%P %a %D %t %c %m %G'
