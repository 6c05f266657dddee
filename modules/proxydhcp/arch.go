package proxydhcp

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// archNames maps the architecture names accepted in "boot" to the client
// system architecture types (DHCP option 93, RFC 4578 section 2.1 and the
// IANA "Processor Architecture Types" registry) they stand for. Type 7 is
// x64 UEFI per RFC 4578 erratum 4624 and IANA; some firmware (VMware EFI,
// older U-Boot) sends 9, the registry's EFI byte code, for x64, so both
// mean efi-x64.
//
//	name              option 93
//	bios              0   x86 BIOS (legacy PXE ROMs)
//	efi-ia32          6   x86 UEFI
//	efi-x64           7, 9 x64 UEFI
//	efi-arm32         10  ARM 32-bit UEFI
//	efi-arm64         11  ARM 64-bit UEFI
//	http-ia32         15  x86 UEFI HTTP boot
//	http-x64          16  x64 UEFI HTTP boot
//	http-arm32        18  ARM 32-bit UEFI HTTP boot
//	http-arm64        19  ARM 64-bit UEFI HTTP boot
//	http-bios         20  x86 BIOS HTTP boot
//	efi-riscv32       25  RISC-V 32-bit UEFI
//	http-riscv32      26  RISC-V 32-bit UEFI HTTP boot
//	efi-riscv64       27  RISC-V 64-bit UEFI
//	http-riscv64      28  RISC-V 64-bit UEFI HTTP boot
//	efi-loongarch64   39  LoongArch 64-bit UEFI
//	http-loongarch64  40  LoongArch 64-bit UEFI HTTP boot
//
// Any other type is configured by its decimal number.
var archNames = map[string][]uint16{
	"bios":             {0},
	"efi-ia32":         {6},
	"efi-x64":          {7, 9},
	"efi-arm32":        {10},
	"efi-arm64":        {11},
	"http-ia32":        {15},
	"http-x64":         {16},
	"http-arm32":       {18},
	"http-arm64":       {19},
	"http-bios":        {20},
	"efi-riscv32":      {25},
	"http-riscv32":     {26},
	"efi-riscv64":      {27},
	"http-riscv64":     {28},
	"efi-loongarch64":  {39},
	"http-loongarch64": {40},
}

// httpArchs are the architecture types of UEFI HTTP boot clients, which
// identify as "HTTPClient" and need a URL as their boot file.
var httpArchs = map[uint16]bool{15: true, 16: true, 18: true, 19: true, 20: true, 26: true, 28: true, 40: true}

// parseArch returns the option 93 types a "boot" key stands for: an
// architecture name from archNames or a decimal type number.
func parseArch(name string) ([]uint16, error) {
	if types, ok := archNames[strings.ToLower(name)]; ok {
		return types, nil
	}
	n, err := strconv.ParseUint(name, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("unknown architecture %q: use one of %s or an option 93 number", name, strings.Join(knownArchNames(), ", "))
	}
	return []uint16{uint16(n)}, nil
}

// archLabel names a type for logs and metrics: its architecture name, or
// its number when it has none.
func archLabel(t uint16) string {
	for name, types := range archNames {
		for _, v := range types {
			if v == t {
				return name
			}
		}
	}
	return strconv.Itoa(int(t))
}

func knownArchNames() []string {
	names := make([]string, 0, len(archNames))
	for name := range archNames {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}
