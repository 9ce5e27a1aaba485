#!/usr/bin/env bash
# Usage: HOSTS="host0 host1 ..." [VAR=value ...] launch/ssh_gpu.sh {train|logs|stop}
#
# Multi-host GPU training of vidstyleode-jax over plain ssh, for machines without SLURM. Process i runs on the i-th
# host of HOSTS and uses all GPUs of that host; the coordinator is the first host at COORDINATOR_PORT. The
# environment of each process carries JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID, which
# vidstyleode_jax.parallel.initialize_distributed() passes to jax.distributed.initialize().
#
# Prerequisites on every host: passwordless ssh from this machine, the repository at REPO_DIR and a venv at VENV
# with `pip install -e .` and `pip install "jax[cuda12]"`, the data and ported weights at the paths the config
# names, and WORKDIR on a filesystem all hosts share (NFS or similar). The hosts must reach each other on
# COORDINATOR_PORT. config.data.batch_size must be divisible by the total number of GPUs.
#
#   HOSTS="gpu-a gpu-b" WORKDIR=/shared/runs/fashion EXTRA_ARGS="--config.data.dataset_dir=/shared/data/fashion" \
#     launch/ssh_gpu.sh train
#   HOSTS="gpu-a gpu-b" launch/ssh_gpu.sh logs
#   HOSTS="gpu-a gpu-b" launch/ssh_gpu.sh stop
set -euo pipefail
if (( BASH_VERSINFO[0] < 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] < 4) )); then
  echo "this script needs bash >= 4.4 for \${var@Q} quoting (macOS: brew install bash)" >&2
  exit 2
fi

HOSTS="${HOSTS:-}"                                  # space-separated ssh destinations ([user@]host); first = process 0
COORDINATOR_HOST="${COORDINATOR_HOST:-}"            # address the others use to reach host 0; empty = first of HOSTS
COORDINATOR_PORT="${COORDINATOR_PORT:-12355}"       # free TCP port on host 0
REPO_DIR="${REPO_DIR:-vidstyleode-jax}"             # repository on each host (relative paths are from the ssh home)
VENV="${VENV:-vidstyleode-venv}"                    # venv on each host (relative paths are from the ssh home)
CONFIG="${CONFIG:-configs/fashion.py}"              # config file, relative to REPO_DIR
WORKDIR="${WORKDIR:-/shared/vidstyleode/runs/fashion}"  # run directory, shared by all hosts
EXTRA_ARGS="${EXTRA_ARGS:-}"                        # extra train.py flags, split into words on each host
LOG_DIR="${LOG_DIR:-vidstyleode-logs}"              # log and pid folder on each host (relative: from the ssh home)
LOG_LINES="${LOG_LINES:-100}"                       # `logs`: lines shown before following
STOP_TIMEOUT="${STOP_TIMEOUT:-600}"                 # `stop`: seconds to wait for the checkpoint and the exit
SSH="${SSH:-ssh -o BatchMode=yes}"                  # ssh command, e.g. "ssh -i ~/.ssh/cluster_key -p 2222"

usage() {
  sed -n '2p' "${BASH_SOURCE[0]}" | sed 's/^# //'
  exit 2
}

read -r -a hosts <<< "${HOSTS}"
read -r -a ssh_command <<< "${SSH}"
if [[ ${#hosts[@]} -eq 0 ]]; then
  echo "set HOSTS to the space-separated list of hosts" >&2
  usage
fi

on_host() {
  local host="$1" command="$2"
  "${ssh_command[@]}" "${host}" "${command}"
}

cmd_train() {
  if [[ "${WORKDIR}" == gs://* ]]; then
    echo "WORKDIR must be a shared POSIX path, not ${WORKDIR} (the trainer writes with local file APIs)" >&2
    exit 2
  fi
  local coordinator="${COORDINATOR_HOST:-${hosts[0]#*@}}:${COORDINATOR_PORT}"
  local process_id
  for process_id in "${!hosts[@]}"; do
    # nohup and the redirections let ssh return while training goes on; the pid file serves `stop`.
    on_host "${hosts[${process_id}]}" "set -e
      mkdir -p ${LOG_DIR@Q}
      log=\$(cd ${LOG_DIR@Q} && pwd)/train_${process_id}.log
      pid_file=\$(cd ${LOG_DIR@Q} && pwd)/train_${process_id}.pid
      python=\$(cd ${VENV@Q} && pwd)/bin/python
      cd ${REPO_DIR@Q}
      JAX_COORDINATOR_ADDRESS=${coordinator@Q} JAX_NUM_PROCESSES=${#hosts[@]} JAX_PROCESS_ID=${process_id} \
        nohup \"\$python\" -m vidstyleode_jax.train \
        --config=${CONFIG@Q} --workdir=${WORKDIR@Q} --progress=false ${EXTRA_ARGS} \
        > \"\$log\" 2>&1 < /dev/null &
      echo \$! > \"\$pid_file\"
      echo \"process ${process_id} started on \$(hostname) as pid \$!, log \$log\""
  done
  echo "coordinator ${coordinator}, ${#hosts[@]} processes"
}

cmd_logs() {
  # Process 0 is the one that logs metrics and writes samples.
  on_host "${hosts[0]}" "tail -n ${LOG_LINES@Q} -F ${LOG_DIR@Q}/train_0.log"
}

cmd_stop() {
  # SIGTERM: the run finishes the steps in flight, saves a checkpoint at the step it reached on every process (one
  # process's signal is enough) and exits 0. Wait for that: a second SIGTERM would stop it at once, without one.
  local process_id
  for process_id in "${!hosts[@]}"; do
    on_host "${hosts[${process_id}]}" "pid_file=${LOG_DIR@Q}/train_${process_id}.pid
      if [ ! -f \"\$pid_file\" ]; then
        echo \"no pid file for process ${process_id}\"
      elif ! kill -TERM \$(cat \"\$pid_file\") 2>/dev/null; then
        echo \"process ${process_id} was not running\"; rm -f \"\$pid_file\"
      else
        for _ in \$(seq ${STOP_TIMEOUT@Q}); do kill -0 \$(cat \"\$pid_file\") 2>/dev/null || break; sleep 1; done
        if kill -0 \$(cat \"\$pid_file\") 2>/dev/null; then
          echo \"process ${process_id} still running after ${STOP_TIMEOUT} s; kill -9 it to stop without a checkpoint\"
        else
          echo \"process ${process_id}: \$(grep 'train: stopped at step' ${LOG_DIR@Q}/train_${process_id}.log | tail -n 1)\"
          rm -f \"\$pid_file\"
        fi
      fi"
  done
}

case "${1:-}" in
  train) cmd_train ;;
  logs) cmd_logs ;;
  stop) cmd_stop ;;
  *) usage ;;
esac
