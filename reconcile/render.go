package reconcile

import (
	"crypto/sha256"
	"encoding/json"
	"maps"
	"strings"

	"warden/schema"
	"warden/state"
)

// appSettings is appsettings.json, in the shape of the reference product's
// file (ASP.NET style names) so that operators find what they know:
// AllowedHosts is one string joined with ";", Logging.LogLevel.Default is
// the level. Field order is fixed, so the same settings render the same
// bytes and an idle agent never rewrites the file.
type appSettings struct {
	AllowedHosts          string                `json:"AllowedHosts"`
	Logging               appLogging            `json:"Logging"`
	Endpoints             appEndpoints          `json:"Endpoints"`
	AlternativeSignatures []string              `json:"AlternativeSignatures"`
	Certificate           appCertificate        `json:"Certificate"`
	Backend               *appBackend           `json:"Backend,omitempty"`
	Audit                 appAudit              `json:"Audit"`
	RateLimit             schema.RateLimit      `json:"RateLimit"`
	CircuitBreaker        schema.CircuitBreaker `json:"CircuitBreaker"`
}

type appLogging struct {
	LogLevel      map[string]string `json:"LogLevel"`
	RetentionDays int               `json:"RetentionDays"`
}

type appEndpoints struct {
	Https  string `json:"Https,omitempty"`
	Health string `json:"Health,omitempty"`
	Mqtt   string `json:"Mqtt,omitempty"`
}

type appCertificate struct {
	RotateBeforeDays int    `json:"RotateBeforeDays"`
	Path             string `json:"Path,omitempty"`
	KeyPath          string `json:"KeyPath,omitempty"`
	// CertPassword is always empty: keys are protected by file mode, never
	// by a password written beside them (schema refuses one).
	CertPassword string `json:"CertPassword"`
}

type appBackend struct {
	URL         string `json:"Url"`
	PollSeconds int    `json:"PollSeconds"`
	Group       string `json:"Group,omitempty"`
}

type appAudit struct {
	RetentionDays int `json:"RetentionDays"`
}

// renderSettings renders appsettings.json from the settings and the
// listen addresses.
func renderSettings(sp *schema.SettingsSpec, l Listen) []byte {
	orDefault := func(v, d int) int {
		if v == 0 {
			return d
		}
		return v
	}
	level := sp.Logging.Level
	if level == "" {
		level = "Information"
	}
	a := appSettings{
		AllowedHosts: strings.Join(sp.AllowedHosts, ";"),
		Logging: appLogging{LogLevel: map[string]string{"Default": level},
			RetentionDays: orDefault(sp.Logging.RetentionDays, schema.DefaultRetentionDays)},
		Endpoints:             appEndpoints{Https: l.API, Health: l.Health, Mqtt: l.MQTT},
		AlternativeSignatures: append([]string{}, sp.AlternativeSignatures...),
		Certificate: appCertificate{RotateBeforeDays: orDefault(sp.Certificate.RotateBeforeDays, schema.DefaultRotateBeforeDays),
			Path: sp.Certificate.Path, KeyPath: sp.Certificate.KeyPath},
		Audit: appAudit{RetentionDays: orDefault(sp.Audit.RetentionDays, schema.DefaultRetentionDays)},
		RateLimit: schema.RateLimit{PerMinute: orDefault(sp.RateLimit.PerMinute, schema.DefaultRateLimitPerMin),
			Queue: orDefault(sp.RateLimit.Queue, schema.DefaultRateLimitQueue)},
		CircuitBreaker: schema.CircuitBreaker{Failures: orDefault(sp.CircuitBreaker.Failures, schema.DefaultBreakerFailures),
			OpenSeconds: orDefault(sp.CircuitBreaker.OpenSeconds, schema.DefaultBreakerOpenSecond)},
	}
	if b := sp.Backend; b != nil {
		a.Backend = &appBackend{URL: b.URL, PollSeconds: orDefault(b.PollSeconds, schema.DefaultPollSeconds), Group: b.Group}
	}
	out, _ := json.MarshalIndent(a, "", "  ")
	return append(out, '\n')
}

// fileWant is one materialized file: its bytes and what it is made from.
type fileWant struct {
	data []byte
	sum  [32]byte
	kind string // document kind
	id   string // document id
}

// patchDesired is desiredFiles(sn, l) made from prev, the desired files of
// the snapshot whose documents were prevDocs, when sn holds documents of
// the same kinds and ids at the same places: prev is copied (it is not
// changed) and the files of the documents that differ replaced, so a
// generation that changes 10 of 10,000 documents builds 10 entries, not
// 10,000. ok is false otherwise, or when many changed.
func patchDesired(prev map[string]*fileWant, prevDocs []*schema.Document, sn *state.Snapshot, l Listen) (out map[string]*fileWant, ok bool) {
	if prev == nil || len(prevDocs) != len(sn.Docs) {
		return nil, false
	}
	var changed []*schema.Document
	for i, d := range sn.Docs {
		p := prevDocs[i]
		if p == d {
			continue
		}
		if p.Kind != d.Kind || p.ID != d.ID || len(changed) == maxPatched {
			return nil, false
		}
		changed = append(changed, d)
	}
	out = maps.Clone(prev)
	data := renderSettings(sn.Settings(), l)
	out[settingsFile] = &fileWant{data: data, sum: sha256.Sum256(data), kind: schema.KindSettings, id: "agent"}
	for _, d := range changed {
		if dir, ok := folderOf[d.Kind]; ok {
			out[dir+"/"+d.ID+".json"] = &fileWant{data: d.Raw, sum: d.Hash, kind: d.Kind, id: d.ID}
		}
	}
	return out, true
}

// maxPatched bounds the documents patchDesired replaces.
const maxPatched = 1000

// folderOf is filesFolders the other way round.
var folderOf = func() map[string]string {
	out := map[string]string{}
	for dir, kind := range filesFolders {
		out[kind] = dir
	}
	return out
}()

// desiredFiles maps every materialized path (relative, slash-separated) to
// its content. Policy, Plugin and Job documents are written exactly as
// received (Raw), so an operator can check a file against the bundle's
// manifest hash; Approvers are not materialized.
func desiredFiles(sn *state.Snapshot, l Listen) map[string]*fileWant {
	out := make(map[string]*fileWant, len(sn.Docs)+1)
	data := renderSettings(sn.Settings(), l)
	out[settingsFile] = &fileWant{data: data, sum: sha256.Sum256(data), kind: schema.KindSettings, id: "agent"}
	for dir, kind := range filesFolders {
		for _, d := range sn.OfKind(kind) {
			out[dir+"/"+d.ID+".json"] = &fileWant{data: d.Raw, sum: d.Hash, kind: d.Kind, id: d.ID}
		}
	}
	return out
}
