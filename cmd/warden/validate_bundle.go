package main

import (
	"warden/schema"
	"warden/source"
)

// validateBundle validates the documents of a bundle file; the signature is
// `warden bundle verify`'s business.
func validateBundle(path string) ([]*schema.Document, error) {
	return source.ValidateBundleFile(path)
}
