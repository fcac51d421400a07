package main

import (
	"errors"

	"warden/schema"
)

// validateBundle is replaced by source.ValidateBundleFile once bundles land.
func validateBundle(path string) ([]*schema.Document, error) {
	return nil, errors.New(path + ": bundle files are not supported yet")
}
