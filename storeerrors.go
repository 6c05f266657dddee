package tftp

import (
	"errors"
	"io/fs"

	"github.com/caddy-tftp/tftp/store"
)

// errorCodeFor maps a store error to the TFTP error code and a message that
// is safe to show a client.
func errorCodeFor(err error) (ErrorCode, string) {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return ErrCodeFileNotFound, "file not found"
	case errors.Is(err, fs.ErrExist):
		return ErrCodeFileExists, "file already exists"
	case errors.Is(err, store.ErrTooLarge):
		return ErrCodeDiskFull, "file too large"
	case errors.Is(err, store.ErrStoreFull):
		return ErrCodeDiskFull, "disk full or allocation exceeded"
	case errors.Is(err, fs.ErrPermission):
		return ErrCodeAccessViolated, "access violation"
	case errors.Is(err, store.ErrUnavailable):
		return ErrCodeUndefined, "upstream unavailable"
	default:
		return ErrCodeUndefined, "internal server error"
	}
}
