package engine

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"warden/api"
	"warden/policy"
)

// encoded is what api.WriteJSON writes for r.
func encoded(t testing.TB, r *Result) []byte {
	t.Helper()
	rec := httptest.NewRecorder()
	api.WriteJSON(rec, 200, r)
	return rec.Body.Bytes()
}

func TestAnswerIsEncoder(t *testing.T) {
	exp := time.Date(2026, 12, 1, 3, 4, 5, 600, time.UTC)
	locked := time.Date(2026, 12, 1, 3, 4, 5, 0, time.FixedZone("", 3600))
	tests := []struct {
		name string
		r    Result
		ok   bool
	}{
		{"no match", Result{Decision: policy.Decision{Decision: "deny", Effective: "deny", Mode: "enforce",
			Matched: []string{}, Reason: policy.ReasonNoMatch}}, true},
		{"nil matched", Result{Decision: policy.Decision{Decision: "deny"}}, true},
		{"every field", Result{Decision: policy.Decision{Decision: "allow", Effective: "allow", Mode: "monitor-notify",
			Policy: "p-1", EnforcedBy: "p-2", Matched: []string{"p-1", "p-2"}, Reason: "ok <&>", DurationSeconds: 900,
			RedirectTo: "https://x/y?a=1&b=2", Notify: true},
			ApprovalID: "a-1", GrantID: "g-1", GrantExpiresAt: &exp, MFA: "verified", MFALockedUntil: &locked}, true},
		{"quote left to the encoder", Result{Decision: policy.Decision{Decision: "deny", Reason: `say "no"`}}, false},
		{"non-ASCII left to the encoder", Result{Decision: policy.Decision{Decision: "deny", Policy: "é"}}, false},
		{"explain left to the encoder", Result{Decision: policy.Decision{Decision: "deny", Explain: &policy.Explain{}}}, false},
		{"year 10000 left to the encoder", Result{GrantExpiresAt: ptr(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC))}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.r.appendJSON(nil)
			if ok != tt.ok {
				t.Fatalf("appendJSON ok %v, want %v", ok, tt.ok)
			}
			if ok {
				if want := encoded(t, &tt.r); !bytes.Equal(got, want) {
					t.Errorf("appendJSON:\n got %s\nwant %s", got, want)
				}
			}
			// What the handler writes is the encoder's either way.
			rec := httptest.NewRecorder()
			writeResult(rec, &tt.r)
			if want := encoded(t, &tt.r); !bytes.Equal(rec.Body.Bytes(), want) || rec.Header().Get("Content-Type") != "application/json" {
				t.Errorf("writeResult: %s (%s), want %s", rec.Body.Bytes(), rec.Header().Get("Content-Type"), want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func FuzzAnswerJSON(f *testing.F) {
	f.Add("allow", "p-1", "no policy matched", "g-1", 900, int64(1), true)
	f.Add("deny", "\"", "<&>\u2028", "\xff", -1, int64(-1), false)
	f.Fuzz(func(t *testing.T, decision, pol, reason, id string, secs int, nanos int64, notify bool) {
		at := time.Unix(0, nanos).UTC()
		r := Result{Decision: policy.Decision{Decision: decision, Effective: decision, Mode: "enforce", Policy: pol,
			EnforcedBy: id, Matched: []string{pol, id}, Reason: reason, DurationSeconds: secs, RedirectTo: reason, Notify: notify},
			ApprovalID: id, GrantID: pol, GrantExpiresAt: &at, MFA: reason}
		got, ok := r.appendJSON(nil)
		if !ok {
			return
		}
		if want := encoded(t, &r); !bytes.Equal(got, want) {
			t.Fatalf("appendJSON:\n got %s\nwant %s", got, want)
		}
		var back Result
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatal(err)
		}
	})
}

// Inner benchmark: a decision's answer, appended and encoded (into a
// reused buffer: the answer alone).
func BenchmarkAnswerJSON(b *testing.B) {
	r := Result{Decision: policy.Decision{Decision: "justification", Effective: "justification", Mode: "enforce",
		Policy: "p-00042", Matched: []string{"p-00042"}, Reason: "policy p-00042 asks for a justification", DurationSeconds: 900}}
	buf := make([]byte, 0, 512)
	b.Run("appendJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r.appendJSON(buf[:0])
		}
	})
	var out bytes.Buffer
	b.Run("Encoder", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			out.Reset()
			enc := json.NewEncoder(&out)
			enc.SetEscapeHTML(false)
			enc.Encode(r)
		}
	})
}
