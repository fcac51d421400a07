package source

import (
	"fmt"
	"path"
	"strings"

	"warden/schema"
)

// SettingsFile is where the Settings singleton sits in a bundle.
const SettingsFile = "settings.json"

// folderKinds maps each document folder of a bundle to the kind it holds.
var folderKinds = map[string]string{
	"policies":  schema.KindPolicy,
	"approvers": schema.KindApprover,
	"plugins":   schema.KindPlugin,
	"jobs":      schema.KindJob,
}

// placeOf returns the kind and id a bundle path must hold: FOLDER/ID.json
// for the four folders, settings.json for the Settings singleton. Any other
// path has no place in a bundle.
func placeOf(p string) (kind, id string, err error) {
	if p == SettingsFile {
		return schema.KindSettings, "agent", nil
	}
	dir, file := path.Split(p)
	kind, ok := folderKinds[strings.TrimSuffix(dir, "/")]
	if !ok || !strings.HasSuffix(file, ".json") || strings.HasPrefix(file, ".") {
		return "", "", fmt.Errorf("%s: %w (documents go in policies/, approvers/, plugins/, jobs/ as ID.json, or settings.json)", p, ErrLayout)
	}
	return kind, strings.TrimSuffix(file, ".json"), nil
}

// checkPlace reports a document whose kind or id does not match its path,
// so policies/x.json always holds Policy x and materializes back to the
// same file name.
func checkPlace(p string, d *schema.Document) schema.Errors {
	if inPlace(p, d) {
		return nil // what placeOf(p) would say, without taking p apart
	}
	kind, id, err := placeOf(p)
	if err != nil {
		return schema.Errors{{File: p, Msg: err.Error()}}
	}
	var out schema.Errors
	if d.Kind != kind {
		out = append(out, schema.Issue{File: p, Path: "kind", Msg: fmt.Sprintf("invalid value %q (a document in this place must be a %s)", d.Kind, kind)})
	}
	if d.ID != id {
		out = append(out, schema.Issue{File: p, Path: "id", Msg: fmt.Sprintf("invalid value %q (must match the file name, %q)", d.ID, id)})
	}
	return out
}

// kindFolders is folderKinds the other way round.
var kindFolders = map[string]string{
	schema.KindPolicy:   "policies",
	schema.KindApprover: "approvers",
	schema.KindPlugin:   "plugins",
	schema.KindJob:      "jobs",
}

// inPlace reports whether p is the place of d: FOLDER/ID.json for its
// kind, settings.json for Settings agent.
func inPlace(p string, d *schema.Document) bool {
	if d.Kind == schema.KindSettings {
		return p == SettingsFile && d.ID == "agent"
	}
	dir, ok := kindFolders[d.Kind]
	return ok && d.ID != "" && !strings.HasPrefix(d.ID, ".") && !strings.Contains(d.ID, "/") &&
		len(p) == len(dir)+1+len(d.ID)+len(".json") &&
		strings.HasPrefix(p, dir) && p[len(dir)] == '/' && p[len(dir)+1:len(p)-len(".json")] == d.ID &&
		strings.HasSuffix(p, ".json")
}
