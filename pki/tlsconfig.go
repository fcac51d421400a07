package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
)

// modernSuites are the TLS 1.2 suites allowed: ECDHE key exchange with an
// AEAD cipher only. TLS 1.3 suites are not configurable and all modern.
// The RSA variants are there for an operator's custom RSA certificate.
var modernSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// ServerTLSConfig returns the configuration for the API and broker
// listeners: TLS 1.2 minimum with ECDHE+AEAD suites, the certificate from
// holder (read per handshake, so rotation applies to new connections while
// open ones keep theirs), and client certificates requested but optional.
//
// The TLS layer deliberately does not verify client certificates
// (tls.RequestClientCert rather than VerifyClientCertIfGiven): with
// verification in the handshake, a foreign, expired or otherwise bad
// certificate dies there with a TLS alert, before any code that knows the
// peer's address can audit PROCESS_AUTHENTICATION_FAILED. Every caller of
// this configuration must therefore run CA.Identify (which checks chain,
// validity, usage and revocation; the handshake still proves possession of
// the key) before serving anything but /health. Revocation could not be
// checked by the handshake anyway.
func ServerTLSConfig(ca *CA, holder *ServerCert) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   modernSuites,
		GetCertificate: holder.GetCertificate,
		ClientAuth:     tls.RequestClientCert,
		// Sent in the CertificateRequest so clients pick the right certificate.
		ClientCAs: ca.Pool(),
	}
}

// ClientTLSConfig returns the configuration the operator CLI uses to reach
// the local agent: it trusts certsDir/ca.pem (and the certificate the agent
// last served, certsDir/server.pem, so an operator's custom certificate works
// too) and presents certsDir/admin.pem with certsDir/admin-key.pem.
func ClientTLSConfig(certsDir string) (*tls.Config, error) {
	caPEM, err := readPublic(filepath.Join(certsDir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("pki: read CA certificate (run as root or the agent's user): %w", err)
	}
	certPEM, err := readPublic(filepath.Join(certsDir, AdminCertFile))
	if err != nil {
		return nil, fmt.Errorf("pki: read admin certificate (run as root or the agent's user): %w", err)
	}
	keyPEM, err := readPrivate(filepath.Join(certsDir, AdminKeyFile))
	if err != nil {
		return nil, fmt.Errorf("pki: read admin key: %w", err)
	}
	cfg, err := ClientTLSConfigPEM(caPEM, certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	served, err := readPublic(filepath.Join(certsDir, ServerCertFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("pki: read server certificate: %w", err)
	}
	if err == nil {
		cfg.RootCAs.AppendCertsFromPEM(served)
	}
	return cfg, nil
}

// ClientTLSConfigPEM returns a client configuration that trusts caPEM and
// presents certPEM/keyPEM, for callers that hold their certificate in memory
// (plugins receive theirs over an inherited file descriptor).
func ClientTLSConfigPEM(caPEM, certPEM, keyPEM []byte) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("pki: no certificate in CA PEM")
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: client certificate: %w", err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: modernSuites,
		RootCAs:      pool,
		Certificates: []tls.Certificate{pair},
	}, nil
}
