package main

import (
	"encoding/json"
	"time"

	"github.com/spf13/cobra"
)

// completeIDs offers the ids the running agent lists at path (an object
// whose key holds a list of objects with "id"), for shell completion of
// live ids: jobs, approvals. Quiet and quick when no agent answers.
func completeIDs(path, key string) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, err := newClient()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c.http.Timeout = 2 * time.Second
		var raw map[string]json.RawMessage
		if err := c.call("GET", path, nil, &raw); err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var items []struct {
			ID   string `json:"id"`
			Spec struct {
				Name string `json:"name"`
			} `json:"spec"`
			State string `json:"state"`
		}
		json.Unmarshal(raw[key], &items)
		out := make([]string, 0, len(items))
		for _, it := range items {
			desc := it.Spec.Name
			if desc == "" {
				desc = it.State
			}
			if desc != "" {
				out = append(out, it.ID+"\t"+desc)
			} else {
				out = append(out, it.ID)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

var (
	completeJobs      = completeIDs("/api/v1/jobs", "jobs")
	completeApprovals = completeIDs("/api/v1/approvals", "approvals")
)
