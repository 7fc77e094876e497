#!/bin/bash
# DEFT-DPO on a Slurm cluster: one task per GPU (or per CPU socket), all
# stages of `deft run` in one job. Submit with:
#   sbatch slurm/deft-dpo.sh conf/deft-dpo-run.yaml
# A job that reaches its time limit writes a checkpoint and ends; submitting
# the same command again skips the finished stages and resumes training.
#SBATCH --job-name=deft-dpo
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=8
#SBATCH --cpus-per-task=8
#SBATCH --time=12:00:00
#SBATCH --signal=USR1@300            # every task: checkpoint 5 minutes before the limit
#SBATCH --output=deft-dpo-%j.out
set -euo pipefail

config=${1:-conf/deft-dpo-run.yaml}
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
export OPENBLAS_NUM_THREADS=1
# Parallel HDF5 on NFS/Lustre: POSIX file locking is often unsupported there.
export HDF5_USE_FILE_LOCKING=FALSE

# Without "B:" in --signal, Slurm sends SIGUSR1 to the tasks of the job step
# themselves; deft's training writes a checkpoint and every rank exits 0.
srun --kill-on-bad-exit=1 build/deft run "$config"
