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
		Long: "validate checks every document against the CUE schemas and prints every error of every\n" +
			"path given, naming the file, the field and the rule. Exit 0: all valid; 1: invalid;\n" +
			"2: nothing but unreadable inputs.",
		Example: `  warden validate policies/dev-tools.json
  warden validate ./desired/ bundle-42.tar.gz other.json`,
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
	var files, bundles []string
	// Every path is looked at, and every problem reported, before the exit
	// code is chosen: one unreadable or bad input does not hide the others.
	var all schema.Errors
	unreadable := 0
	problem := func(path string, err error) {
		all = append(all, schema.Issue{File: path, Msg: err.Error()})
	}
	for _, p := range args {
		st, err := os.Stat(p)
		if err != nil {
			problem(p, err)
			unreadable++
			continue
		}
		switch {
		case st.IsDir():
			err := filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
				if err != nil {
					problem(path, err)
					unreadable++
					return nil
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
	n := 0
	// collect keeps the documents and broken rules of one validation; any
	// other error (a bundle that cannot be read as one) is that input's
	// problem, reported with the rest.
	collect := func(name string, docs []*schema.Document, err error) {
		n += len(docs)
		var se schema.Errors
		switch {
		case errors.As(err, &se):
			all = append(all, se...)
		case err != nil:
			problem(name, err)
		}
	}
	for _, b := range bundles {
		docs, err := validateBundle(b)
		collect(b, docs, err)
	}
	inputs := make([]schema.File, 0, len(files))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			problem(f, err)
			unreadable++
			continue
		}
		inputs = append(inputs, schema.File{Name: f, Data: data})
	}
	docs, err := schema.ValidateMany(inputs)
	collect("", docs, err)
	all = append(all, policyIssues(inputs, docs)...)
	for _, w := range policy.AllowListWarnings(docs, time.Now()) {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning: "+w)
	}
	if len(all) > 0 {
		for _, is := range all {
			fmt.Fprintln(cmd.ErrOrStderr(), is.String())
		}
		err := fmt.Errorf("%d error(s) in %d input(s)", len(all), len(files)+len(bundles)+unreadable)
		if unreadable > 0 && unreadable == len(all) {
			return usageErr(err) // nothing but unreadable inputs: exit 2
		}
		return badNews(err)
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
