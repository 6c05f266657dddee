package httpstore

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddy-tftp/tftp/store"
)

// writePEM writes one PEM block to a file in dir.
func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestHTTPStoreTLS: an https upstream is trusted through tls_ca, refused
// without it, and one that requires a client certificate gets the
// configured one.
func TestHTTPStoreTLS(t *testing.T) {
	dir := t.TempDir()
	// A client certificate, self-signed, for client authentication.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "tftp"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	clientCert := writePEM(t, dir, "client.pem", "CERTIFICATE", der)
	clientKey := writePEM(t, dir, "client.key", "PRIVATE KEY", keyDER)
	clientX509, _ := x509.ParseCertificate(der)
	clientPool := x509.NewCertPool()
	clientPool.AddCert(clientX509)

	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		_, _ = io.WriteString(w, "secure")
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: clientPool}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := writePEM(t, dir, "ca.pem", "CERTIFICATE", srv.Certificate().Raw)

	// Without the CA: refused as unknown authority.
	s, _ := newStore(t, srv.URL+"/", nil)
	if _, err := s.Open("f"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("untrusted upstream: %v", err)
	}
	// With the CA but no client certificate: 403.
	s, _ = newStore(t, srv.URL+"/", func(s *HTTP) { s.TLS = &TLSConfig{CA: ca} })
	if _, err := s.Open("f"); !errors.Is(err, os.ErrPermission) {
		t.Fatalf("no client certificate: %v", err)
	}
	// With both.
	s, _ = newStore(t, srv.URL+"/", func(s *HTTP) {
		s.TLS = &TLSConfig{CA: ca, ClientCertificate: clientCert, ClientKey: clientKey}
	})
	f, err := s.Open("f")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := readAll(f, 512)
	if err != nil || string(got) != "secure" {
		t.Fatalf("read %q, %v", got, err)
	}
}
