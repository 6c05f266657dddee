#!/usr/bin/env bash
# Boots real firmware (iPXE, OVMF, U-Boot) under QEMU against the tftp app:
# installs the tools if missing, then runs the firmware test suite.
# Needs root (network namespaces, tap devices, apt-get). Extra arguments go
# to go test, e.g. ./firmware.sh -run TestUBoot
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
./firmware/install.sh
exec go test -tags firmware -count=1 -v "$@" ./firmware/
