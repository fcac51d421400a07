package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"warden/atomicfile"
	"warden/source"
)

func init() {
	bundleCmd := &cobra.Command{Use: "bundle", Short: "make and check signed bundles of desired state"}
	bundleCmd.AddCommand(bundleKeygenCmd(), bundleBuildCmd(), bundleVerifyCmd())
	rootCmd.AddCommand(bundleCmd)
}

func bundleKeygenCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "keygen --out DIR",
		Short: "write DIR/bundle.key (Ed25519, PKCS#8 PEM, 0600) and DIR/bundle.pub (PKIX PEM)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pub, err := source.WriteKeyPair(out)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s and %s\nkeyId %s\n",
				filepath.Join(out, source.PrivateKeyFile), filepath.Join(out, source.PublicKeyFile), source.KeyID(pub))
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "folder for the key pair (created 0700 if missing)")
	cmd.MarkFlagRequired("out")
	return cmd
}

func bundleBuildCmd() *cobra.Command {
	var in, keyPath, out, expires, created string
	var version int64
	cmd := &cobra.Command{
		Use:   "build --in DIR --key KEY --version N [--expires DUR] --out FILE",
		Short: "sign a folder of documents into a bundle (the same input gives the same bytes)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := source.LoadPrivateKey(keyPath)
			if err != nil {
				return err
			}
			opts := source.BuildOptions{Version: version}
			if opts.Created, err = createdTime(created); err != nil {
				return err
			}
			if expires != "" {
				if opts.Expires, err = parseDays(expires); err != nil {
					return fmt.Errorf("--expires: %w", err)
				}
			}
			data, m, err := source.Build(in, key, opts)
			if err != nil {
				return badNews(err)
			}
			if err := atomicfile.Write(out, data, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: version %d, %d files, created %s, keyId %s\n",
				out, m.Version, len(m.Files), m.Created, m.KeyID)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&in, "in", "", "folder of documents: settings.json, policies/, approvers/, plugins/, jobs/")
	f.StringVar(&keyPath, "key", "", "Ed25519 private key (PKCS#8 PEM)")
	f.Int64Var(&version, "version", 0, "bundle version; agents apply only versions above the applied one")
	f.StringVar(&expires, "expires", "", "lifetime after created, e.g. 720h or 30d")
	f.StringVar(&created, "created", "", "creation time, RFC 3339 (default: $SOURCE_DATE_EPOCH, else the newest input file's mtime)")
	f.StringVar(&out, "out", "", "bundle file to write")
	for _, n := range []string{"in", "key", "version", "out"} {
		cmd.MarkFlagRequired(n)
	}
	return cmd
}

func bundleVerifyCmd() *cobra.Command {
	var pubs []string
	cmd := &cobra.Command{
		Use:   "verify FILE [--pub PUB]...",
		Short: "check a bundle's signature, files and documents without applying it (keys: --pub, else ROOT/trust)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			trust, err := verifyTrust(pubs)
			if err != nil {
				return err
			}
			b, err := source.ReadBundleFile(args[0])
			if err != nil {
				if source.Refused(err) {
					return badNews(fmt.Errorf("%s: refused: %s", args[0], source.Reason(err)))
				}
				return err
			}
			v, err := source.Verify(context.Background(), b, trust, time.Now())
			if err != nil {
				return badNews(fmt.Errorf("%s: refused: %s", args[0], source.Reason(err)))
			}
			w := cmd.OutOrStdout()
			m := v.Manifest
			fmt.Fprintf(w, "%s: ok\n  version   %d\n  created   %s\n", args[0], m.Version, m.Created)
			if m.Expires != "" {
				fmt.Fprintf(w, "  expires   %s\n", m.Expires)
			}
			fmt.Fprintf(w, "  keyId     %s (trusted by %s)\n  files     %d, hashes match\n", v.KeyID, v.TrustedBy, len(m.Files))
			counts := map[string]int{}
			for _, d := range v.Docs {
				counts[d.Kind]++
			}
			var parts []string
			for _, k := range []string{"Settings", "Policy", "Approver", "Plugin", "Job"} {
				if counts[k] > 0 {
					parts = append(parts, fmt.Sprintf("%d %s", counts[k], k))
				}
			}
			fmt.Fprintf(w, "  documents %s, all valid\n", strings.Join(parts, ", "))
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&pubs, "pub", nil, "trusted public key (PEM); repeatable")
	return cmd
}

func verifyTrust(pubs []string) (*source.Trust, error) {
	if len(pubs) == 0 {
		return source.LoadTrust(filepath.Join(rootDir, "trust"))
	}
	var keys []ed25519.PublicKey
	for _, p := range pubs {
		k, err := source.LoadPublicKey(p)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return source.NewTrust(keys...), nil
}

// createdTime reads --created, else SOURCE_DATE_EPOCH (the reproducible
// builds convention), else zero: the newest input file's mtime.
func createdTime(flag string) (time.Time, error) {
	if flag != "" {
		t, err := time.Parse(time.RFC3339, flag)
		if err != nil {
			return time.Time{}, fmt.Errorf("--created: %w", err)
		}
		return t, nil
	}
	if env := os.Getenv("SOURCE_DATE_EPOCH"); env != "" {
		secs, err := strconv.ParseInt(env, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH: %w", err)
		}
		return time.Unix(secs, 0), nil
	}
	return time.Time{}, nil
}

// parseDays is time.ParseDuration that also takes whole days ("30d").
func parseDays(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err == nil && d <= 0 {
		err = fmt.Errorf("invalid duration %q", s)
	}
	return d, err
}
