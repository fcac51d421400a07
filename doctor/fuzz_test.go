package doctor

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzProcNetTCP feeds arbitrary /proc/net/tcp{,6} tables to the parser
// doctor trusts for the loopback check: it must never panic, and every
// listener it returns must carry a valid address.
func FuzzProcNetTCP(f *testing.F) {
	f.Add("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
		"   0: 0100007F:1AE9 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0 100 0 0 10 0\n")
	f.Add("header\n   0: 00000000000000000000000001000000:1AE8 00000000000000000000000000000000:0000 0A 0 0 0 0 0 0 0 777\n")
	f.Add("header\n 0: zz:1 0 0A 0 0 0 0 0 0 9\n")
	f.Add("header\n 0: 0100007F:FFFFF 0 0A 0 0 0 0 0 0 9\n")
	f.Fuzz(func(t *testing.T, table string) {
		p := filepath.Join(t.TempDir(), "tcp")
		if err := os.WriteFile(p, []byte(table), 0o600); err != nil {
			t.Fatal(err)
		}
		ls, err := listeners(p)
		if err != nil {
			return
		}
		for _, l := range ls {
			if !l.addr.IsValid() || l.inode == "" {
				t.Fatalf("listener %+v from %q", l, table)
			}
		}
	})
}
