package audit_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"warden/audit"
	"warden/schema"
	"warden/state"
)

// applySettings makes a Settings document with audit.forward the store's
// current generation, as a bundle would.
func applySettings(t *testing.T, st *state.Store, forward string) {
	t.Helper()
	doc := `{"kind": "Settings", "id": "agent", "spec": {"audit": {"forward": ` + forward + `}}}`
	d, err := schema.Validate("settings.json", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.ApplyGeneration(state.Apply{Source: "test", Docs: []*schema.Document{d}}); err != nil {
		t.Fatal(err)
	}
}

// startForwarder runs a Forwarder until the returned stop is called (or
// the test ends).
func startForwarder(t *testing.T, st *state.Store, w *audit.Writer) (*audit.Forwarder, func()) {
	t.Helper()
	f := audit.NewForwarder(st, w, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Run(ctx)
	}()
	stop := func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return f, stop
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// writeTLSFiles writes a CA (ca.pem) and a server certificate for
// 127.0.0.1 signed by it (server.pem, server-key.pem) into dir.
func writeTLSFiles(t *testing.T, dir string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test SIEM CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	for name, b := range map[string]*pem.Block{
		"ca.pem":         {Type: "CERTIFICATE", Bytes: caDER},
		"server.pem":     {Type: "CERTIFICATE", Bytes: der},
		"server-key.pem": {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

const rsyslogConf = `global(workDirectory="{{dir}}/work" maxMessageSize="64k"
  DefaultNetstreamDriver="gtls"
  DefaultNetstreamDriverCAFile="{{dir}}/ca.pem"
  DefaultNetstreamDriverCertFile="{{dir}}/server.pem"
  DefaultNetstreamDriverKeyFile="{{dir}}/server-key.pem")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")
input(type="imtcp" address="127.0.0.1" port="{{port}}")
template(name="line" type="string" string="%app-name% %msgid% %structured-data% %msg%\n")
action(type="omfile" file="{{dir}}/received.log" template="line")
`

// rsyslog is a real rsyslogd (Debian's, with rsyslog-gnutls) receiving
// RFC 5425 syslog over TLS on 127.0.0.1 and writing each message to
// received.log.
type rsyslog struct {
	t    *testing.T
	dir  string
	port int
	cmd  *exec.Cmd
}

func newRsyslog(t *testing.T) *rsyslog {
	t.Helper()
	if _, err := exec.LookPath("rsyslogd"); err != nil {
		t.Skip("rsyslogd not installed (Debian packages rsyslog and rsyslog-gnutls, listed in .ci/packages.d/fleet)")
	}
	if m, _ := filepath.Glob("/usr/lib/*/rsyslog/lmnsd_gtls.so"); len(m) == 0 {
		t.Skip("rsyslog's TLS driver not installed (Debian package rsyslog-gnutls, listed in .ci/packages.d/fleet)")
	}
	dir := t.TempDir()
	writeTLSFiles(t, dir)
	if err := os.Mkdir(filepath.Join(dir, "work"), 0o700); err != nil {
		t.Fatal(err)
	}
	r := &rsyslog{t: t, dir: dir, port: freePort(t)}
	conf := bytes.ReplaceAll([]byte(rsyslogConf), []byte("{{dir}}"), []byte(dir))
	conf = bytes.ReplaceAll(conf, []byte("{{port}}"), []byte(strconv.Itoa(r.port)))
	if err := os.WriteFile(filepath.Join(dir, "rsyslog.conf"), conf, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.kill)
	return r
}

func (r *rsyslog) addr() string { return fmt.Sprintf("127.0.0.1:%d", r.port) }

// start runs rsyslogd in the foreground and waits until it listens.
func (r *rsyslog) start() {
	r.t.Helper()
	r.cmd = exec.Command("rsyslogd", "-n", "-f", filepath.Join(r.dir, "rsyslog.conf"), "-i", filepath.Join(r.dir, "rsyslog.pid"))
	r.cmd.Stdout, r.cmd.Stderr = os.Stderr, os.Stderr
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", r.addr())
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("rsyslogd does not listen on %s: %v", r.addr(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill ends rsyslogd with SIGKILL: what it held in memory is lost.
func (r *rsyslog) kill() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	r.cmd.Process.Kill()
	r.cmd.Wait()
	r.cmd = nil
}

// lines counts the lines rsyslog has written so far.
func (r *rsyslog) lines() int {
	data, _ := os.ReadFile(filepath.Join(r.dir, "received.log"))
	return bytes.Count(data, []byte{'\n'})
}

var receivedLine = regexp.MustCompile(`^warden ([A-Z_]+) \[warden@32473 seq="(\d+)" hash="([0-9a-f]{64})" prevHash="([0-9a-f]*)" id="([0-9a-f]+)"\] (\{.*\})$`)

// received reads what rsyslog wrote: each line's event by sequence
// number, and how many lines repeated a sequence number.
func (r *rsyslog) received() (map[uint64][]byte, int) {
	r.t.Helper()
	f, err := os.Open(filepath.Join(r.dir, "received.log"))
	if os.IsNotExist(err) {
		return nil, 0
	}
	if err != nil {
		r.t.Fatal(err)
	}
	defer f.Close()
	got := map[uint64][]byte{}
	dups := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		m := receivedLine.FindSubmatch(bytes.TrimSpace(sc.Bytes()))
		if m == nil {
			r.t.Fatalf("received line not in the expected form: %q", sc.Text())
		}
		seq, _ := strconv.ParseUint(string(m[2]), 10, 64)
		var e audit.Event
		if err := json.Unmarshal(m[6], &e); err != nil {
			r.t.Fatalf("message of seq %d is not an event: %v", seq, err)
		}
		if e.Seq != seq || e.Hash != string(m[3]) || e.PrevHash != string(m[4]) || e.ID != string(m[5]) || e.Type != string(m[1]) {
			r.t.Fatalf("structured data %q disagrees with the event %+v", m[0][:120], e)
		}
		if prev, ok := got[seq]; ok {
			dups++
			if !bytes.Equal(prev, m[6]) {
				r.t.Fatalf("seq %d received twice with different content", seq)
			}
		}
		got[seq] = append([]byte(nil), m[6]...)
	}
	return got, dups
}

// checkChain verifies that events 1..n are all there, that each one's hash
// is the SHA-256 of its canonical form (the JSON with "hash" empty), and
// that each names the previous one's hash.
func checkChain(t *testing.T, got map[uint64][]byte, n uint64) {
	t.Helper()
	prev := ""
	for seq := uint64(1); seq <= n; seq++ {
		raw, ok := got[seq]
		if !ok {
			t.Fatalf("seq %d never arrived (of %d)", seq, n)
		}
		var e audit.Event
		json.Unmarshal(raw, &e)
		canonical := bytes.Replace(raw, []byte(`"hash":"`+e.Hash+`"}`), []byte(`"hash":""}`), 1)
		sum := sha256.Sum256(canonical)
		if hex.EncodeToString(sum[:]) != e.Hash {
			t.Fatalf("seq %d: hash does not verify", seq)
		}
		if seq > 1 && e.PrevHash != prev {
			t.Fatalf("seq %d: prev_hash %s, want %s", seq, e.PrevHash, prev)
		}
		prev = e.Hash
	}
}

// waitFor polls cond every 50 ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lastSeq is the newest stored event's sequence number.
func lastSeq(t *testing.T, st *state.Store) uint64 {
	t.Helper()
	e, _, err := st.LastAudit()
	if err != nil {
		t.Fatal(err)
	}
	return e.Seq
}
