#!/usr/bin/env bash
# Installs the Debian packages deft builds and runs with. Run as root (or
# with sudo available). Used by the README, by CI and by new users alike.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  openmpi-bin libopenmpi-dev          # ranks and collectives
  openssh-client                      # Open MPI's launcher looks for ssh even on one node
  libhdf5-openmpi-dev hdf5-tools      # Q_diff, scores, checkpoints
  libyaml-dev                         # config files
  libpcre2-dev                        # tokenizer pre-split (Unicode regex, JIT)
  libjansson-dev                      # JSON / JSONL
  zlib1g-dev                          # .jsonl.gz
  libopenblas-dev                     # CPU GEMM
  gnuplot-nox fonts-liberation        # deft plot (PNG text needs a font)
  jq procps gzip                      # used by the command tests
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
