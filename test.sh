#!/usr/bin/env bash
# Runs the full test suite: installs the real TFTP clients used by the
# end-to-end tests (Debian/Ubuntu, apt-get), then go vet, gofmt, the race
# tests and a short run of every fuzz target.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

FUZZTIME="${FUZZTIME:-15s}"

step() {
	printf '\n==== %s ====\n' "$*"
}

# have_clients succeeds when every client binary the tests use is present.
have_clients() {
	command -v curl >/dev/null 2>&1 &&
		command -v atftp >/dev/null 2>&1 &&
		command -v busybox >/dev/null 2>&1 &&
		command -v tftp >/dev/null 2>&1 &&
		tftp -V 2>&1 | grep -q 'tftp-hpa'
}

step "TFTP clients (curl, tftp-hpa, atftp, busybox)"
if have_clients; then
	echo "all clients present"
else
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "error: missing TFTP clients and no apt-get; install curl, tftp-hpa, atftp and busybox" >&2
		exit 1
	fi
	SUDO=()
	if [ "$(id -u)" -ne 0 ]; then
		if command -v sudo >/dev/null 2>&1; then
			SUDO=(sudo)
		else
			echo "error: not root and sudo is unavailable; install curl, tftp-hpa, atftp and busybox" >&2
			exit 1
		fi
	fi
	export DEBIAN_FRONTEND=noninteractive
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		curl tftp-hpa atftp busybox
	have_clients || {
		echo "error: TFTP clients still missing after apt-get install" >&2
		exit 1
	}
fi

step "go vet ./..."
go vet ./...

step "gofmt -l ."
unformatted="$(gofmt -l .)"
if [ -n "$unformatted" ]; then
	echo "error: these files need gofmt -w:" >&2
	echo "$unformatted" >&2
	exit 1
fi
echo "ok"

step "go test -race -count=1 -timeout 30m ./..."
go test -race -count=1 -timeout 30m ./...

step "go vet -tags firmware ./firmware/"
go vet -tags firmware ./firmware/

# Real boot firmware (iPXE, OVMF, U-Boot) under QEMU. The UEFI and U-Boot
# runs need network namespaces, so root; CI runs as root.
if [ "$(id -u)" -eq 0 ]; then
	step "firmware boot tests (QEMU)"
	./firmware/install.sh
	go test -tags firmware -count=1 -timeout 20m -v ./firmware/
else
	step "firmware boot tests NOT RUN: they need root (network namespaces); run: sudo ./firmware.sh"
fi

step "benchmarks compile and run once"
go test -run='^$' -bench=. -benchtime=1x -timeout 10m .

# Fuzz targets are discovered from the sources so new ones are picked up,
# in the root package and in every package under modules/.
fuzzed=0
for pkg in . modules/*/; do
	pkg="${pkg%/}"
	[ -d "$pkg" ] || continue
	targets="$(grep -ho '^func Fuzz[A-Za-z0-9_]*' -- "$pkg"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u || true)"
	for target in $targets; do
		step "fuzz $target in $pkg ($FUZZTIME)"
		go test -run='^$' -fuzz="^${target}\$" -fuzztime="$FUZZTIME" "./$pkg"
		fuzzed=1
	done
done
if [ "$fuzzed" -eq 0 ]; then
	step "fuzzing: no fuzz targets found"
fi

step "all checks passed"
