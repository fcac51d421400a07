// Package source is where desired state comes from: signed bundles (the
// format, building, reading and verifying them), the airgapped inbox, and
// sync with a central backend. Every source hands bundle bytes to one
// Pipeline, which verifies, validates and applies them as one generation
// and audits the outcome. Sources write to state; they never call
// controllers or touch the machine.
package source
