// Package identity holds an X.509-SVID loaded from PEM files, the mTLS credentials built from it (go-spiffe
// tlsconfig with AuthorizeMemberOf the SVID's trust domain, on every connection, unix sockets included, with
// descriptor passing below TLS) and the tokens upstream NSM signs with it (sdk pkg/tools/spiffejwt).
package identity

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"nsm-ts.local/interop/peer/internal/fdpass"
)

// Metadata keys of upstream's per-RPC token (sdk pkg/tools/token).
const (
	TokenKey   = "nsm-client-token"
	ExpiresKey = "nsm-client-token-expires"
)

// DefaultMaxTokenLifetime is NSM_MAX_TOKEN_LIFETIME's default in the cmd-* binaries.
const DefaultMaxTokenLifetime = 10 * time.Minute

// Identity is one component's SVID, trust bundle and token lifetime.
type Identity struct {
	SVID             *x509svid.SVID
	Bundle           *x509bundle.Bundle
	MaxTokenLifetime time.Duration
}

// Load reads `<name>-svid.pem` (leaf first, then intermediates), the PKCS#8 key and the bundle of the SVID's
// trust domain.
func Load(certFile, keyFile, caFile string) (*Identity, error) {
	svid, err := x509svid.Load(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading the SVID from %s and %s: %w", certFile, keyFile, err)
	}
	bundle, err := x509bundle.Load(svid.ID.TrustDomain(), caFile)
	if err != nil {
		return nil, fmt.Errorf("loading the trust bundle from %s: %w", caFile, err)
	}
	return &Identity{SVID: svid, Bundle: bundle, MaxTokenLifetime: DefaultMaxTokenLifetime}, nil
}

// ID is the SPIFFE ID of the SVID.
func (i *Identity) ID() string { return i.SVID.ID.String() }

// TrustDomain is the SVID's trust domain.
func (i *Identity) TrustDomain() spiffeid.TrustDomain { return i.SVID.ID.TrustDomain() }

// Cert is the leaf certificate.
func (i *Identity) Cert() *x509.Certificate { return i.SVID.Certificates[0] }

// ServerCredentials: mTLS as a server (go-spiffe MTLSServerConfig, members of our trust domain only), with
// descriptor passing on unix sockets.
func (i *Identity) ServerCredentials() credentials.TransportCredentials {
	cfg := tlsconfig.MTLSServerConfig(i.SVID, i.Bundle, tlsconfig.AuthorizeMemberOf(i.TrustDomain()))
	return fdpass.TransportCredentials(credentials.NewTLS(cfg))
}

// ClientCredentials: mTLS as a client (go-spiffe MTLSClientConfig), with descriptor passing on unix sockets.
func (i *Identity) ClientCredentials() credentials.TransportCredentials {
	cfg := tlsconfig.MTLSClientConfig(i.SVID, i.Bundle, tlsconfig.AuthorizeMemberOf(i.TrustDomain()))
	return fdpass.TransportCredentials(credentials.NewTLS(cfg))
}

// Token signs a token shaped as upstream's spiffejwt: ES256 with the SVID key, sub = own ID, aud = [peer's ID]
// when the peer certificate is known, exp = now + max lifetime capped by our and the peer's NotAfter. No
// jwk/x5c header.
func (i *Identity) Token(peerCert *x509.Certificate) (string, time.Time, error) {
	exp := time.Now().Add(i.MaxTokenLifetime)
	if na := i.Cert().NotAfter; na.Before(exp) {
		exp = na
	}
	claims := jwt.RegisteredClaims{Subject: i.ID()}
	if peerCert != nil {
		id, err := x509svid.IDFromCert(peerCert)
		if err != nil {
			return "", time.Time{}, fmt.Errorf("the peer certificate has no SPIFFE ID: %w", err)
		}
		if peerCert.NotAfter.Before(exp) {
			exp = peerCert.NotAfter
		}
		claims.Audience = jwt.ClaimStrings{id.String()}
	}
	claims.ExpiresAt = jwt.NewNumericDate(exp)
	tok, err := jwt.NewWithClaims(jwt.SigningMethodES256, claims).SignedString(i.SVID.PrivateKey)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("signing a token as %s: %w", i.ID(), err)
	}
	return tok, exp, nil
}

// PeerCert is the leaf certificate the TLS peer presented, if any.
func PeerCert(info credentials.AuthInfo) *x509.Certificate {
	var certs []*x509.Certificate
	switch v := info.(type) {
	case credentials.TLSInfo:
		certs = v.State.PeerCertificates
	case *credentials.TLSInfo:
		certs = v.State.PeerCertificates
	}
	if len(certs) == 0 {
		return nil
	}
	return certs[0]
}

// PeerCertFromContext is PeerCert of the call in ctx.
func PeerCertFromContext(ctx context.Context) *x509.Certificate {
	if p, ok := peer.FromContext(ctx); ok {
		return PeerCert(p.AuthInfo)
	}
	return nil
}

// IDOf is the SPIFFE ID of a certificate ("" if it has none).
func IDOf(cert *x509.Certificate) string {
	if cert == nil {
		return ""
	}
	id, err := x509svid.IDFromCert(cert)
	if err != nil {
		return ""
	}
	return id.String()
}

// CallCredentials is what one call carries as upstream's per-RPC credentials: a fresh token for the peer of the
// connection the call goes out on (so the very first call already has aud), plus a hook that gets that
// connection's peer before the request is written (to queue descriptors on it, as grpcfd's per-RPC wrapper does).
type CallCredentials struct {
	ID *Identity
	// OnPeer runs (once per attempt) with the call's peer before the request bytes go out.
	OnPeer func(p *peer.Peer)
	// Sent is the token of the last attempt.
	Sent string
	// NoAud leaves aud out (a fault: what a hop that does not know its peer yet would send).
	NoAud bool
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (c *CallCredentials) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, fmt.Errorf("no peer in the call's context")
	}
	if c.OnPeer != nil {
		c.OnPeer(p)
	}
	cert := PeerCert(p.AuthInfo)
	if c.NoAud {
		cert = nil
	}
	tok, exp, err := c.ID.Token(cert)
	if err != nil {
		return nil, err
	}
	c.Sent = tok
	return map[string]string{TokenKey: tok, ExpiresKey: exp.Format(time.RFC3339Nano)}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (c *CallCredentials) RequireTransportSecurity() bool { return true }
