package main

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"warden/policy"
	"warden/schema"
	"warden/source"
)

func init() {
	rootCmd.AddCommand(&cobra.Command{
		Use:   "validate PATH...",
		Short: "Validate documents, folders of documents (the bundle layout) or bundle files",
		Long: "validate checks every document against the CUE schemas and prints every error,\n" +
			"naming the file, the field and the rule. Exit 0: all valid; 1: invalid; 2: unreadable.",
		Args: cobra.MinimumNArgs(1),
		RunE: runValidate,
	})
	rootCmd.AddCommand(&cobra.Command{
		Use:   "schema export",
		Short: "Print the CUE schemas, for use with `cue vet`",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] != "export" {
				return fmt.Errorf("unknown schema command %q (want: export)", args[0])
			}
			_, err := cmd.OutOrStdout().Write(schema.Source())
			return err
		},
	})
}

func runValidate(cmd *cobra.Command, args []string) error {
	var files []string
	var bundles []string
	for _, p := range args {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		switch {
		case st.IsDir():
			err := filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if !d.IsDir() && strings.HasSuffix(path, ".json") && d.Name() != "manifest.json" {
					files = append(files, path)
				}
				return nil
			})
			if err != nil {
				return err
			}
		case isBundleName(p):
			bundles = append(bundles, p)
		default:
			files = append(files, p)
		}
	}
	var all schema.Errors
	n := 0
	// collect keeps the documents and broken rules of one validation; any
	// other error (unreadable input) ends the command.
	collect := func(docs []*schema.Document, err error) error {
		n += len(docs)
		var se schema.Errors
		if err != nil && !errors.As(err, &se) {
			return err
		}
		all = append(all, se...)
		return nil
	}
	for _, b := range bundles {
		if err := collect(validateBundle(b)); err != nil {
			return err
		}
	}
	inputs := make([]schema.File, 0, len(files))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		inputs = append(inputs, schema.File{Name: f, Data: data})
	}
	docs, err := schema.ValidateMany(inputs)
	if err := collect(docs, err); err != nil {
		return err
	}
	all = append(all, policyIssues(inputs, docs)...)
	for _, w := range policy.AllowListWarnings(docs, time.Now()) {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning: "+w)
	}
	if len(all) > 0 {
		for _, is := range all {
			fmt.Fprintln(cmd.ErrOrStderr(), is.String())
		}
		return badNews(fmt.Errorf("%d error(s) in %d file(s)", len(all), len(files)+len(bundles)))
	}
	fmt.Fprintf(cmd.OutOrStdout(), "ok: %d document(s) valid\n", n)
	return nil
}

// policyIssues compiles the valid policies among the files as the agent
// will (source.CompilePolicies) and names each broken rule by the file it
// came from, not the bundle-layout name the id implies.
func policyIssues(inputs []schema.File, docs []*schema.Document) schema.Errors {
	errs := source.CompilePolicies(docs)
	if errs == nil {
		return nil
	}
	byHash := make(map[[32]byte]string, len(inputs))
	for _, f := range inputs {
		byHash[sha256.Sum256(f.Data)] = f.Name
	}
	byFile := map[string]string{}
	for _, d := range docs {
		if d.Kind == schema.KindPolicy {
			byFile[policy.PolicyFile(d.ID)] = byHash[d.Hash]
		}
	}
	for i, is := range errs {
		if name := byFile[is.File]; name != "" {
			errs[i].File = name
		}
	}
	return errs
}

func isBundleName(p string) bool {
	return strings.HasSuffix(p, ".tar.gz") || strings.HasSuffix(p, ".tgz")
}
