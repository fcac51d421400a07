package audit_test

import (
	"reflect"
	"testing"

	"warden/audit"
	"warden/schema"
)

func TestConfigChanges(t *testing.T) {
	doc := func(kind, id string, spec any) *schema.Document {
		return &schema.Document{Kind: kind, ID: id, Spec: spec}
	}
	quiet := schema.DefaultSettings()
	loud := schema.DefaultSettings()
	loud.Logging.Level = "debug"
	job := func(c string) *schema.JobSpec { return &schema.JobSpec{Concurrency: c} }
	old := []*schema.Document{
		doc(schema.KindSettings, "agent", quiet),
		doc(schema.KindJob, "nightly", job("a")),
		doc(schema.KindJob, "gone", job("g")),
		doc(schema.KindPolicy, "p", &schema.PolicySpec{Name: "x"}),
	}
	cases := []struct {
		name string
		next []*schema.Document
		want []audit.ConfigChange
	}{
		{"nothing", old, nil},
		{"policy only", []*schema.Document{old[0], old[1], old[2], doc(schema.KindPolicy, "p", &schema.PolicySpec{Name: "y"})}, nil},
		{"settings changed, job added, job changed, job removed", []*schema.Document{
			doc(schema.KindSettings, "agent", loud), doc(schema.KindJob, "nightly", job("b")), doc(schema.KindJob, "new", job("n")), old[3]},
			[]audit.ConfigChange{{Kind: "Job", ID: "gone", Change: "removed"}, {Kind: "Job", ID: "new", Change: "added"},
				{Kind: "Job", ID: "nightly", Change: "changed"}, {Kind: "Settings", ID: "agent", Change: "changed"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := audit.ConfigChanges(old, tc.next); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ConfigChanges = %+v; want %+v", got, tc.want)
			}
		})
	}
}
