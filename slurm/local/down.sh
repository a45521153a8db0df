#!/usr/bin/env bash
# Stop the single-node Slurm started by slurm/local/up.sh: cancel every job first (slurmstepd
# outlives slurmd, so jobs would keep running), then stop slurmd, slurmctld and munged by pid file.
# Safe to run when nothing is running.
set -uo pipefail

say() { printf 'slurm/local/down.sh: %s\n' "$*"; }

[[ "$(id -u)" == 0 ]] || { echo "slurm/local/down.sh: must run as root" >&2; exit 1; }

if command -v scontrol >/dev/null && scontrol ping 2>/dev/null | grep -q 'is UP'; then
    jobs="$(squeue -h -o '%i' 2>/dev/null | wc -l)"
    if (( jobs > 0 )); then
        say "cancelling $jobs job(s)"
        squeue -h -o '%i' | xargs -r scancel --quiet 2>/dev/null || true
        for _ in $(seq 100); do
            [[ -z "$(squeue -h -t PD,R,CG,S -o '%i' 2>/dev/null)" ]] && break
            sleep 0.2
        done
    fi
fi

stop() {  # stop PIDFILE NAME: kill the process the pid file names, if it is NAME
    local pid
    [[ -s "$1" ]] || { say "$2 not running"; return 0; }
    pid="$(cat "$1")"
    if [[ -r "/proc/$pid/comm" && "$(cat "/proc/$pid/comm")" == "$2" ]]; then
        say "stopping $2 (pid $pid)"
        kill "$pid"
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && { say "$2 still alive; sending SIGKILL"; kill -9 "$pid"; }
    else
        say "$2 not running (stale pid file)"
    fi
    rm -f "$1"
}

stop /run/slurmd.pid slurmd
stop /run/slurmctld.pid slurmctld
stop /run/munge/munged.pid munged
say "Slurm is down"
