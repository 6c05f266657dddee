package tftp

// Packet encoders and decoders that only the test clients need.

import "encoding/binary"

// appendRequest encodes an RRQ or WRQ.
func appendRequest(dst []byte, op uint16, filename, mode string, opts ...option) []byte {
	dst = binary.BigEndian.AppendUint16(dst, op)
	dst = append(append(dst, filename...), 0)
	dst = append(append(dst, mode...), 0)
	for _, o := range opts {
		dst = append(append(dst, o.name...), 0)
		dst = append(append(dst, o.value...), 0)
	}
	return dst
}

// parseOACK decodes an OACK.
func parseOACK(b []byte) ([]option, error) {
	if opcode(b) != opOACK {
		return nil, errBadOpcode
	}
	rest := b[2:]
	var opts []option
	for len(rest) > 0 {
		k, r, err := cutField(rest)
		if err != nil {
			return nil, err
		}
		v, r, err := cutField(r)
		if err != nil {
			return nil, err
		}
		rest = r
		opts = append(opts, option{name: asciiLower(k), value: string(v)})
	}
	return opts, nil
}
