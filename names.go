package tftp

import (
	"errors"
	"strings"
)

// TFTP file names: how a requested name becomes a store key.

// cleanName turns a requested name into a store key: backslashes (sent by
// some PXE clients) are path separators, a leading slash is relative to the
// store's root, empty and "." segments are dropped, and ".." may not climb
// above the root.
func cleanName(raw string) (string, error) {
	if raw == "" || len(raw) > maxNameLen || strings.IndexByte(raw, 0) >= 0 {
		return "", errBadName
	}
	raw = strings.ReplaceAll(raw, `\`, "/")
	segments := make([]string, 0, strings.Count(raw, "/")+1)
	for seg := range strings.SplitSeq(raw, "/") {
		switch seg {
		case "", ".":
		case "..":
			if len(segments) == 0 {
				return "", errBadName
			}
			segments = segments[:len(segments)-1]
		default:
			segments = append(segments, seg)
		}
	}
	if len(segments) == 0 {
		return "", errBadName
	}
	return strings.Join(segments, "/"), nil
}

// errBadName is returned for names that cannot be served.
var errBadName = errors.New("invalid file name")
