// Package pluginenv is the contract between the agent and the plugin
// processes it starts: the environment variables that say where the broker
// and the API are, and how the plugin's certificate and key reach it
// without being written where another user could read them. The plugin
// supervisor uses Pipe and the Env* names; plugins call Load.
// docs/plugins.md describes the same contract for plugins not written in Go.
package pluginenv

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"warden/pki"
)

// Environment variables the agent sets for a plugin.
const (
	EnvID       = "WARDEN_PLUGIN_ID" // the plugin's id, as in its certificate
	EnvMQTTAddr = "WARDEN_MQTT_ADDR" // 127.0.0.1:PORT of the broker (TLS)
	EnvAPIAddr  = "WARDEN_API_ADDR"  // 127.0.0.1:PORT of the HTTPS API
	// EnvCertFD is the number of an inherited file descriptor (a pipe) from
	// which the plugin reads its credentials to EOF, then closes it.
	EnvCertFD = "WARDEN_CERT_FD"
	// EnvCertFile is the alternative to EnvCertFD: a 0600 file holding the
	// same bytes, which the plugin deletes as soon as it has read it.
	EnvCertFile = "WARDEN_CERT_FILE"
	// EnvCAFile optionally names a PEM file of further CA certificates to
	// trust (the credentials already carry the agent's CA).
	EnvCAFile = "WARDEN_CA_FILE"
)

// maxCredentials bounds what Load reads from the descriptor or file.
const maxCredentials = 1 << 20

// Credentials are what the agent hands a plugin at start.
type Credentials struct {
	CertPEM []byte // the plugin's client certificate (warden://plugin/ID)
	KeyPEM  []byte // its private key
	CAPEM   []byte // the agent's CA certificate: trust it for the broker and the API
}

// Encode renders the credentials as the bytes a plugin reads: PEM blocks,
// the certificate first, then the key, then the CA certificate(s).
func (c Credentials) Encode() []byte {
	var b bytes.Buffer
	for _, p := range [][]byte{c.CertPEM, c.KeyPEM, c.CAPEM} {
		b.Write(bytes.TrimSpace(p))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// Decode parses Encode's output: the first CERTIFICATE block is the
// plugin's, the first private key block its key, and every later
// CERTIFICATE a CA to trust.
func Decode(data []byte) (Credentials, error) {
	var c Credentials
	for {
		var blk *pem.Block
		blk, data = pem.Decode(data)
		if blk == nil {
			break
		}
		enc := pem.EncodeToMemory(blk)
		switch {
		case blk.Type == "CERTIFICATE" && c.CertPEM == nil:
			c.CertPEM = enc
		case blk.Type == "CERTIFICATE":
			c.CAPEM = append(c.CAPEM, enc...)
		case strings.HasSuffix(blk.Type, "PRIVATE KEY") && c.KeyPEM == nil:
			c.KeyPEM = enc
		default:
			return Credentials{}, fmt.Errorf("pluginenv: unexpected PEM block %q", blk.Type)
		}
	}
	if c.CertPEM == nil || c.KeyPEM == nil {
		return Credentials{}, errors.New("pluginenv: credentials need a certificate and a private key")
	}
	return c, nil
}

// Pipe returns the read end of a pipe that holds the encoded credentials;
// the write end is already closed. Pass it in exec.Cmd.ExtraFiles and set
// EnvCertFD to 3 plus its index there; close it in the agent once the
// process has started. The key never touches the disk.
func Pipe(c Credentials) (*os.File, error) {
	data := c.Encode()
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	// A pipe buffers 64 KiB on Linux; credentials are about 2 KiB, so the
	// write completes before anyone reads.
	if len(data) > 60<<10 {
		r.Close()
		w.Close()
		return nil, errors.New("pluginenv: credentials too large for a pipe")
	}
	_, err = w.Write(data)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// Config is what a plugin learns from its environment.
type Config struct {
	ID       string
	MQTTAddr string
	APIAddr  string
	Credentials
}

// Load reads the plugin's environment and credentials: from the descriptor
// EnvCertFD (then closed) or the file EnvCertFile (then deleted). It unsets
// the credential variables so children of the plugin do not inherit them.
// The id is taken from the certificate when EnvID is unset, and must match
// it when set.
func Load() (Config, error) {
	cfg := Config{ID: os.Getenv(EnvID), MQTTAddr: os.Getenv(EnvMQTTAddr), APIAddr: os.Getenv(EnvAPIAddr)}
	data, err := readCredentials()
	if err != nil {
		return cfg, err
	}
	if cfg.Credentials, err = Decode(data); err != nil {
		return cfg, err
	}
	if path := os.Getenv(EnvCAFile); path != "" {
		extra, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("pluginenv: %s: %w", EnvCAFile, err)
		}
		cfg.CAPEM = append(cfg.CAPEM, extra...)
	}
	name, err := pluginName(cfg.CertPEM)
	if err != nil {
		return cfg, err
	}
	if cfg.ID == "" {
		cfg.ID = name
	} else if cfg.ID != name {
		return cfg, fmt.Errorf("pluginenv: %s=%q but the certificate is for %q", EnvID, cfg.ID, name)
	}
	if cfg.MQTTAddr == "" {
		return cfg, fmt.Errorf("pluginenv: %s is not set", EnvMQTTAddr)
	}
	return cfg, nil
}

func readCredentials() ([]byte, error) {
	fdStr, path := os.Getenv(EnvCertFD), os.Getenv(EnvCertFile)
	os.Unsetenv(EnvCertFD)
	os.Unsetenv(EnvCertFile)
	switch {
	case fdStr != "":
		fd, err := strconv.Atoi(fdStr)
		if err != nil || fd < 3 {
			return nil, fmt.Errorf("pluginenv: %s=%q is not an inherited descriptor", EnvCertFD, fdStr)
		}
		f := os.NewFile(uintptr(fd), "credentials")
		if f == nil {
			return nil, fmt.Errorf("pluginenv: descriptor %d is not open", fd)
		}
		defer f.Close()
		return readAll(f)
	case path != "":
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("pluginenv: %s: %w", EnvCertFile, err)
		}
		defer f.Close()
		data, err := readAll(f)
		if rerr := os.Remove(path); err == nil && rerr != nil {
			err = fmt.Errorf("pluginenv: remove %s: %w", path, rerr)
		}
		return data, err
	}
	return nil, fmt.Errorf("pluginenv: neither %s nor %s is set", EnvCertFD, EnvCertFile)
}

func readAll(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxCredentials+1))
	if err == nil && len(data) > maxCredentials {
		err = errors.New("pluginenv: credentials larger than 1 MiB")
	}
	return data, err
}

// pluginName returns NAME from the certificate's warden://plugin/NAME.
func pluginName(certPEM []byte) (string, error) {
	blk, _ := pem.Decode(certPEM)
	if blk == nil {
		return "", errors.New("pluginenv: no certificate")
	}
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return "", fmt.Errorf("pluginenv: %w", err)
	}
	for _, u := range leaf.URIs {
		if u.Scheme == pki.URIScheme && u.Host == pki.RolePlugin {
			return strings.TrimPrefix(u.Path, "/"), nil
		}
	}
	return "", errors.New("pluginenv: the certificate is not a plugin's (no warden://plugin/NAME)")
}

// TLSConfig returns a client configuration that presents the plugin's
// certificate and trusts the agent's CA.
func (c Config) TLSConfig() (*tls.Config, error) {
	if len(c.CAPEM) == 0 {
		return nil, errors.New("pluginenv: no CA certificate to trust")
	}
	return pki.ClientTLSConfigPEM(c.CAPEM, c.CertPEM, c.KeyPEM)
}

// ClientID is the MQTT client id the broker accepts for plugin id.
func ClientID(id string) string { return pki.RolePlugin + "/" + id }
