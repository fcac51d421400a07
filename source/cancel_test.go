package source

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"testing"

	"warden/schema"
)

// A context that ends while documents are validated leaves some of them
// unvalidated: Verify must say the context ended, not use the gaps.
func TestVerifyCancelled(t *testing.T) {
	key := newKey(t)
	b, err := ReadBundle(bytes.NewReader(targz(t, craft(t, key, schema.Manifest{Version: 1}, docFiles(nil)))))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	v, err := Verify(ctx, b, NewTrust(key.Public().(ed25519.PublicKey)), fixedNow())
	if !errors.Is(err, context.Canceled) || v != nil {
		t.Fatalf("got %v, %v; want context.Canceled", v, err)
	}
	if Refused(err) {
		t.Errorf("a cancelled check counts as a refusal of the bundle: %v", err)
	}
}
