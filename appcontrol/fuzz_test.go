package appcontrol

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// FuzzParse feeds arbitrary bytes to the fanotify event parser: it must
// never read past what it was given, loop forever or panic, and every
// event it reports must lie inside the buffer.
func FuzzParse(f *testing.F) {
	ev := make([]byte, unix.FAN_EVENT_METADATA_LEN+8)
	binary.NativeEndian.PutUint32(ev[0:], uint32(len(ev)))
	ev[4] = unix.FANOTIFY_METADATA_VERSION
	binary.NativeEndian.PutUint16(ev[6:], unix.FAN_EVENT_METADATA_LEN)
	binary.NativeEndian.PutUint64(ev[8:], unix.FAN_OPEN_EXEC_PERM)
	binary.NativeEndian.PutUint32(ev[16:], 7)    // fd
	binary.NativeEndian.PutUint32(ev[20:], 4242) // pid
	ev[24] = unix.FAN_EVENT_INFO_TYPE_PIDFD
	binary.NativeEndian.PutUint16(ev[26:], 8)
	binary.NativeEndian.PutUint32(ev[28:], 9) // pidfd
	f.Add(ev)
	f.Add(append(append([]byte{}, ev...), ev...))
	f.Add(ev[:unix.FAN_EVENT_METADATA_LEN])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		n := 0
		_ = parse(&group{}, data, func(e *event) {
			n++
			if e.fd < 0 || e.pidfd < -1 {
				t.Fatalf("event with fd %d pidfd %d reported", e.fd, e.pidfd)
			}
		})
		if n > len(data)/unix.FAN_EVENT_METADATA_LEN {
			t.Fatalf("%d events from %d bytes", n, len(data))
		}
	})
}

// FuzzStatus feeds arbitrary /proc/<pid>/status text to its parser.
func FuzzStatus(f *testing.F) {
	f.Add([]byte("Name:\ttrue\nPPid:\t12\nUid:\t1000\t1000\t1000\t1000\nGid:\t100\t100\t100\t100\nGroups:\t4 24 100 \n"))
	f.Add([]byte("Uid:\nGid:\nPPid:\nGroups:\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = parseStatus(data)
	})
}
