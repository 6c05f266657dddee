#!/usr/bin/env bash
# Installs what the firmware end-to-end tests (go test -tags firmware ./firmware/)
# need: QEMU for x86_64 and aarch64, the boot firmware (iPXE, OVMF, U-Boot),
# mkimage, dnsmasq and iproute2. Debian/Ubuntu with apt-get; does nothing when
# everything is already there. The tests themselves never install anything.
set -euo pipefail

# dnsmasq-base is the dnsmasq binary without the system service of the
# dnsmasq package: the tests start it themselves, in their own namespaces.
PACKAGES=(qemu-system-x86 qemu-system-arm ipxe-qemu ipxe ovmf u-boot-qemu u-boot-tools dnsmasq-base iproute2)

# Files and commands each package provides; a package is installed only when
# something it provides is missing.
have() {
	case "$1" in
	qemu-system-x86) command -v qemu-system-x86_64 >/dev/null 2>&1 ;;
	qemu-system-arm) command -v qemu-system-aarch64 >/dev/null 2>&1 ;;
	ipxe-qemu) [ -e /usr/lib/ipxe/qemu/efi-e1000.rom ] ;;
	ipxe) [ -e /usr/lib/ipxe/ipxe.efi ] && [ -e /usr/lib/ipxe/undionly.kpxe ] ;;
	ovmf) [ -e /usr/share/ovmf/OVMF.fd ] ;;
	u-boot-qemu) [ -e /usr/lib/u-boot/qemu-x86_64/u-boot.rom ] && [ -e /usr/lib/u-boot/qemu_arm64/u-boot.bin ] ;;
	u-boot-tools) command -v mkimage >/dev/null 2>&1 ;;
	dnsmasq-base) command -v dnsmasq >/dev/null 2>&1 ;;
	iproute2) command -v ip >/dev/null 2>&1 ;;
	*) return 1 ;;
	esac
}

missing=()
for p in "${PACKAGES[@]}"; do
	have "$p" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
	echo "firmware test tools: all present"
	exit 0
fi
echo "firmware test tools: installing ${missing[*]}"

if ! command -v apt-get >/dev/null 2>&1; then
	echo "error: apt-get not found; install these Debian packages by hand: ${missing[*]}" >&2
	exit 1
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO=(sudo)
	else
		echo "error: not root and no sudo; install: ${missing[*]}" >&2
		exit 1
	fi
fi
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"

still=()
for p in "${PACKAGES[@]}"; do
	have "$p" || still+=("$p")
done
if [ "${#still[@]}" -ne 0 ]; then
	echo "error: still missing after apt-get install: ${still[*]}" >&2
	exit 1
fi
echo "firmware test tools: installed"
