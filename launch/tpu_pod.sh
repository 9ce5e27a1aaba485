#!/usr/bin/env bash
# Usage: [VAR=value ...] launch/tpu_pod.sh {create|setup|train|logs|stop|delete}
#
# Trains vidstyleode-jax on a multi-host Cloud TPU VM slice (e.g. v4-32 = 4 hosts x 4 chips). One Python process
# runs on every TPU VM ("worker"); vidstyleode_jax.parallel.initialize_distributed() calls
# jax.distributed.initialize() with no arguments (VIDSTYLEODE_DISTRIBUTED=1), and JAX finds the coordinator, the
# process count and this worker's index from the TPU VM metadata.
#
# Typical session (run from the repository root, on a machine with an authenticated gcloud):
#   export TPU_NAME=vso-v4-32 ZONE=us-central2-b ACCELERATOR_TYPE=v4-32
#   export WORKDIR=/mnt/shared/runs/fashion_v4_32      # a directory every worker sees (see README.md)
#   export EXTRA_ARGS="--config.data.dataset_dir=/mnt/shared/data/fashion ..."
#   launch/tpu_pod.sh create && launch/tpu_pod.sh setup && launch/tpu_pod.sh train && launch/tpu_pod.sh logs
#   launch/tpu_pod.sh stop && launch/tpu_pod.sh delete
#
# Every knob is an environment variable; the defaults are below.
set -euo pipefail
if (( BASH_VERSINFO[0] < 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] < 4) )); then
  echo "this script needs bash >= 4.4 for \${var@Q} quoting (macOS: brew install bash)" >&2
  exit 2
fi

TPU_NAME="${TPU_NAME:-vidstyleode-tpu}"            # name of the TPU VM slice
ZONE="${ZONE:-us-central2-b}"                      # a zone that offers ACCELERATOR_TYPE
PROJECT="${PROJECT:-}"                             # GCP project; empty = gcloud's configured core/project
ACCELERATOR_TYPE="${ACCELERATOR_TYPE:-v4-32}"      # slice type: <generation>-<cores or chips>
TPU_VERSION="${TPU_VERSION:-tpu-ubuntu2204-base}"  # TPU VM software image (runtime version)
SPOT="${SPOT:-0}"                                  # 1 = create a Spot (preemptible, cheaper) slice
SYNC="${SYNC:-copy}"                               # copy = upload this checkout; git = git clone REPO_URL on workers
REPO_URL="${REPO_URL:-}"                           # used when SYNC=git
REPO_REF="${REPO_REF:-main}"                       # branch, tag or commit to check out when SYNC=git
REMOTE_DIR="${REMOTE_DIR:-vidstyleode-jax}"        # code location on each worker, relative to the login home
PYTHON="${PYTHON:-python3.11}"                     # interpreter for the venv (the package needs Python >= 3.11)
VENV="${VENV:-vidstyleode-venv}"                   # venv location on each worker, relative to the login home
CONFIG="${CONFIG:-configs/fashion.py}"             # config file, relative to the repository root
WORKDIR="${WORKDIR:-/mnt/shared/vidstyleode/runs/fashion}"  # run directory; must be shared by all workers
EXTRA_ARGS="${EXTRA_ARGS:-}"                       # extra flags for train.py, e.g. --config.train.num_steps=1000
LOG_DIR="${LOG_DIR:-vidstyleode-logs}"             # per-worker log folder on each worker, relative to the home
LOG_LINES="${LOG_LINES:-100}"                      # `logs`: lines shown before following
STOP_TIMEOUT="${STOP_TIMEOUT:-600}"                # `stop`: seconds to wait for the checkpoint and the exit

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
  sed -n '2p' "${BASH_SOURCE[0]}" | sed 's/^# //'
  exit 2
}

# Flags shared by every `gcloud compute tpus tpu-vm` call.
gcloud_flags=(--zone="${ZONE}")
if [[ -n "${PROJECT}" ]]; then
  gcloud_flags+=(--project="${PROJECT}")
fi

# Runs a shell command on every worker at once (or on the worker given as $2).
on_workers() {
  local command="$1" worker="${2:-all}"
  gcloud compute tpus tpu-vm ssh "${TPU_NAME}" "${gcloud_flags[@]}" --worker="${worker}" --command="${command}"
}

cmd_create() {
  local extra=()
  if [[ "${SPOT}" == "1" ]]; then
    extra+=(--spot)
  fi
  gcloud compute tpus tpu-vm create "${TPU_NAME}" "${gcloud_flags[@]}" \
    --accelerator-type="${ACCELERATOR_TYPE}" --version="${TPU_VERSION}" "${extra[@]}"
}

cmd_setup() {
  case "${SYNC}" in
    copy)
      # Upload this checkout (without git metadata, caches and local venvs) and unpack it on every worker.
      local tarball
      tarball="$(mktemp -d)/vidstyleode-jax.tar.gz"
      tar -C "${REPO_ROOT}" --exclude=.git --exclude=__pycache__ --exclude='*.egg-info' --exclude=.venv \
        --exclude=venv -czf "${tarball}" .
      gcloud compute tpus tpu-vm scp "${tarball}" "${TPU_NAME}:vidstyleode-jax.tar.gz" "${gcloud_flags[@]}" \
        --worker=all
      rm -f "${tarball}"
      on_workers "rm -rf ${REMOTE_DIR@Q} && mkdir -p ${REMOTE_DIR@Q} && tar -xzf vidstyleode-jax.tar.gz -C ${REMOTE_DIR@Q}"
      ;;
    git)
      if [[ -z "${REPO_URL}" ]]; then
        echo "SYNC=git needs REPO_URL" >&2
        exit 2
      fi
      on_workers "rm -rf ${REMOTE_DIR@Q} && git clone ${REPO_URL@Q} ${REMOTE_DIR@Q} && git -C ${REMOTE_DIR@Q} checkout ${REPO_REF@Q}"
      ;;
    *)
      echo "SYNC must be copy or git, not ${SYNC}" >&2
      exit 2
      ;;
  esac
  # The Ubuntu 22.04 image ships Python 3.10; the package needs 3.11, available from the Ubuntu archive.
  # The package pulls in CPU jax; "jax[tpu]" then adds the matching jaxlib and libtpu.
  on_workers "set -e
    if ! command -v ${PYTHON@Q} >/dev/null; then
      sudo apt-get update -q && sudo apt-get install -y -q ${PYTHON@Q} ${PYTHON@Q}-venv
    fi
    ${PYTHON@Q} -m venv ${VENV@Q}
    ${VENV@Q}/bin/pip install -q --upgrade pip
    ${VENV@Q}/bin/pip install -q -e \"\$(cd ${REMOTE_DIR@Q} && pwd)\"
    ${VENV@Q}/bin/pip install -q -U 'jax[tpu]'
    ${VENV@Q}/bin/python -c 'import jax, vidstyleode_jax; print(jax.__version__)'
    echo \"setup done on \$(hostname)\""
}

cmd_train() {
  if [[ "${WORKDIR}" == gs://* ]]; then
    # The checkpointer (os.path.abspath), metrics and samples (open, os.makedirs) use local file APIs, so a gs://
    # path would become a local folder named "gs:" on each worker. Mount the bucket instead (README.md).
    echo "WORKDIR must be a shared POSIX path (NFS/Filestore or a gcsfuse mount), not ${WORKDIR}" >&2
    exit 2
  fi
  # Each worker writes its log and pid to LOG_DIR; nohup keeps training alive after ssh returns.
  # EXTRA_ARGS is split into words on the workers, so quote values that contain spaces inside it.
  on_workers "set -e
    mkdir -p ${LOG_DIR@Q}
    log=\$(cd ${LOG_DIR@Q} && pwd)/train_\$(hostname).log
    pid_file=\$(cd ${LOG_DIR@Q} && pwd)/train.pid
    python=\$(cd ${VENV@Q} && pwd)/bin/python
    cd ${REMOTE_DIR@Q}
    VIDSTYLEODE_DISTRIBUTED=1 nohup \"\$python\" -m vidstyleode_jax.train \
      --config=${CONFIG@Q} --workdir=${WORKDIR@Q} --progress=false ${EXTRA_ARGS} \
      > \"\$log\" 2>&1 < /dev/null &
    echo \$! > \"\$pid_file\"
    echo \"started pid \$! on \$(hostname), log \$log\""
}

cmd_logs() {
  # Worker 0 is JAX process 0 on a TPU slice: the one that logs metrics and writes samples.
  on_workers "tail -n ${LOG_LINES@Q} -F ${LOG_DIR@Q}/train_\$(hostname).log" 0
}

cmd_stop() {
  # SIGTERM on every worker: the run finishes the steps in flight, saves a checkpoint at the step it reached and
  # exits 0 (a Spot preemption sends the same signal). Wait for that: a second SIGTERM would stop it at once.
  on_workers "pid_file=${LOG_DIR@Q}/train.pid
    if [ ! -f \"\$pid_file\" ]; then
      echo \"no pid file on \$(hostname)\"
    elif ! kill -TERM \$(cat \"\$pid_file\") 2>/dev/null; then
      echo \"not running on \$(hostname)\"; rm -f \"\$pid_file\"
    else
      for _ in \$(seq ${STOP_TIMEOUT@Q}); do kill -0 \$(cat \"\$pid_file\") 2>/dev/null || break; sleep 1; done
      if kill -0 \$(cat \"\$pid_file\") 2>/dev/null; then
        echo \"still running on \$(hostname) after ${STOP_TIMEOUT} s; kill -9 it to stop without a checkpoint\"
      else
        echo \"\$(hostname): \$(grep 'train: stopped at step' ${LOG_DIR@Q}/train_\$(hostname).log | tail -n 1)\"
        rm -f \"\$pid_file\"
      fi
    fi"
}

cmd_delete() {
  gcloud compute tpus tpu-vm delete "${TPU_NAME}" "${gcloud_flags[@]}" --quiet
}

case "${1:-}" in
  create) cmd_create ;;
  setup) cmd_setup ;;
  train) cmd_train ;;
  logs) cmd_logs ;;
  stop) cmd_stop ;;
  delete) cmd_delete ;;
  *) usage ;;
esac
