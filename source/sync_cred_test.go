package source_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"warden/audit"
	"warden/schema"
	"warden/source"
	"warden/state"
)

// The registration's credential goes only to the backend that issued it:
// a Settings document naming another backend gets requests without it.
func TestCredentialOnlyToRegisteredBackend(t *testing.T) {
	var mu sync.Mutex
	var auths []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auths = append(auths, r.Header.Get("Authorization"))
		mu.Unlock()
		w.WriteHeader(http.StatusNotFound)
	}))
	defer other.Close()
	registered := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auths = append(auths, "registered:"+r.Header.Get("Authorization"))
		mu.Unlock()
		w.WriteHeader(http.StatusNotFound)
	}))
	defer registered.Close()

	st, err := state.Open(t.TempDir(), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	aw, _ := audit.NewWriter(st, audit.Options{})
	defer aw.Close()
	if err := st.Put(state.Secrets, source.RegistrationKey, source.Registration{URL: registered.URL + "/v1",
		AgentID: "a1", Credential: "s3cret", Group: "lab", RegisteredAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	poll := func() {
		s := source.NewSync(st, source.NewPipeline(st, aw, t.TempDir()), t.TempDir(), nil)
		s.Poll(context.Background())
	}
	poll() // no Settings: the registered backend, with the credential
	doc, err := schema.Validate("settings.json", []byte(`{"kind": "Settings", "id": "agent", "spec": {"backend": {"url": "`+other.URL+`/v1"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.ApplyGeneration(state.Apply{BundleVersion: 1, Source: "test", Docs: []*schema.Document{doc}}); err != nil {
		t.Fatal(err)
	}
	poll()
	mu.Lock()
	defer mu.Unlock()
	if len(auths) < 2 || auths[0] != "registered:Bearer s3cret" {
		t.Fatalf("requests: %q; want the registered backend first, with the credential", auths)
	}
	for _, a := range auths[1:] {
		if a != "" {
			t.Fatalf("the other backend received Authorization %q", a)
		}
	}
}
