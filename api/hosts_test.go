package api

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestAllowedHosts(t *testing.T) {
	cases := []struct {
		name    string
		allowed []string
		host    string
		want    int
	}{
		{"default allows localhost", []string{"localhost", "127.0.0.1"}, "localhost:6889", 200},
		{"default refuses others", []string{"localhost", "127.0.0.1"}, "evil.example", 400},
		{"star allows any host", []string{"*"}, "evil.example:443", 200},
		{"star allows an IPv6 literal", []string{"*"}, "[::1]:6889", 200},
		{"star among others", []string{"localhost", "*"}, "ws-17.corp", 200},
		{"subdomain wildcard", []string{"*.corp.example"}, "ws-17.corp.example", 200},
		{"subdomain wildcard is not the domain itself", []string{"*.corp.example"}, "corp.example", 400},
		{"subdomain wildcard is a suffix on a dot", []string{"*.corp.example"}, "evilcorp.example", 400},
		{"case-insensitive", []string{"LocalHost"}, "LOCALHOST", 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Options{})
			s.SetAllowedHosts(tc.allowed)
			srv := httptest.NewServer(s.checkHost(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
			defer srv.Close()
			req, _ := http.NewRequest("GET", srv.URL+"/health", nil)
			req.Host = tc.host
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("Host %q with %v: got %d, want %d", tc.host, tc.allowed, resp.StatusCode, tc.want)
			}
		})
	}
}
