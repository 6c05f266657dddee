package tftp

import "testing"

func TestCleanName(t *testing.T) {
	ok := map[string]string{
		"f":                    "f",
		"/f":                   "f",
		"//a//b/":              "a/b",
		"./a/./b":              "a/b",
		`pxelinux.cfg\default`: "pxelinux.cfg/default",
		`\boot\x.efi`:          "boot/x.efi",
		"a/../b":               "b",
		"with space":           "with space",
	}
	for in, want := range ok {
		got, err := cleanName(in)
		if err != nil || got != want {
			t.Errorf("cleanName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "/", ".", "..", "../etc/passwd", "a/../../b", `..\x`, "a\x00b", "/../x"} {
		if got, err := cleanName(bad); err == nil {
			t.Errorf("cleanName(%q) = %q, want an error", bad, got)
		}
	}
}
