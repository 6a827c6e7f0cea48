// Package policy implements, in Go, the checks of upstream NSM's default OPA policies (sdk
// pkg/tools/opa/policies/**/*.rego) with the rego semantics that matter for interop:
//
//   - common/tokens_valid: every token decodes as a JWT (three base64url parts, JSON header and payload); an empty
//     path passes. A missing (empty) token does not decode.
//   - common/tokens_expired: every token's payload has a numeric exp later than now.
//   - common/tokens_chained: for every consecutive pair, some element of token[i].aud equals token[i+1].sub. The
//     aud must be a JSON array (rego iterates it; a plain string gives nothing); fewer than two segments pass.
//   - server/prev_token_signed: the token at index-1 verifies (ES256) against the TLS peer's certificate.
//   - client/next_token_signed: the token at index+1 verifies against the TLS peer's (the server's) certificate.
//   - registry/client_allowed: the resource name is unknown to the checker's own map, or the first path id stored
//     for it equals resource_id (the sub of path segment 0's token).
//
// Which sets apply by default follows sdk pkg/networkservice/common/authorize (server: common + server; client:
// common + client) and the cmd-* registry defaults (server: common + registry + server; client: common +
// registry + client). Policies run in the order upstream loads them (directory walk: chained, expired, valid).
package policy

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Input is what a policy sees: the path's tokens (upstream gives the server only segments 0..index), the index,
// the TLS peer's certificate and, for the registry, the resource fields.
type Input struct {
	Index    uint32
	Tokens   []string
	PeerCert *x509.Certificate

	ResourceID   string
	ResourceName string
	PathIDsMap   map[string][]string
}

// Policy is one named check.
type Policy struct {
	Name  string
	Valid func(in *Input, now time.Time) bool
}

var (
	TokensChained   = Policy{"common/tokens_chained", tokensChained}
	TokensExpired   = Policy{"common/tokens_expired", tokensExpired}
	TokensValid     = Policy{"common/tokens_valid", tokensValid}
	PrevTokenSigned = Policy{"server/prev_token_signed", prevTokenSigned}
	NextTokenSigned = Policy{"client/next_token_signed", nextTokenSigned}
	ClientAllowed   = Policy{"registry/client_allowed", clientAllowed}
)

var common = []Policy{TokensChained, TokensExpired, TokensValid}

// Default sets.
var (
	Server         = append(append([]Policy{}, common...), PrevTokenSigned)
	Client         = append(append([]Policy{}, common...), NextTokenSigned)
	RegistryServer = append(append([]Policy{}, common...), ClientAllowed, PrevTokenSigned)
	RegistryClient = append(append([]Policy{}, common...), ClientAllowed, NextTokenSigned)
)

// Refusal is a failed policy: a gRPC PermissionDenied as upstream answers ("no sufficient privileges", wrapped
// by the authorize element's prefix), naming the policy for our logs and reports.
type Refusal struct {
	Policy string
	Scope  string // "networkservice" or "registry"
}

func (r *Refusal) Error() string {
	return fmt.Sprintf("%s: an error occurred during authorization policy check: rpc error: code = PermissionDenied desc = no sufficient privileges", r.Scope)
}

// GRPCStatus makes the refusal a PermissionDenied status with upstream's message.
func (r *Refusal) GRPCStatus() *status.Status { return status.New(codes.PermissionDenied, r.Error()) }

// Check runs the policies in order; the first that fails is returned as a *Refusal.
func Check(scope string, policies []Policy, in *Input) error {
	now := time.Now()
	for _, p := range policies {
		if !p.Valid(in, now) {
			return &Refusal{Policy: p.Name, Scope: scope}
		}
	}
	return nil
}

// AsRefusal finds a *Refusal in err.
func AsRefusal(err error) (*Refusal, bool) {
	var r *Refusal
	ok := errors.As(err, &r)
	return r, ok
}

// Decode splits a JWT as rego's io.jwt.decode does: header and payload must be base64url JSON objects, the
// signature base64url.
func Decode(token string) (header, payload map[string]any, sig []byte, ok bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, nil, nil, false
	}
	dec := func(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "=")) }
	h, err1 := dec(parts[0])
	p, err2 := dec(parts[1])
	s, err3 := dec(parts[2])
	if err1 != nil || err2 != nil || err3 != nil {
		return nil, nil, nil, false
	}
	if json.Unmarshal(h, &header) != nil || json.Unmarshal(p, &payload) != nil || header == nil || payload == nil {
		return nil, nil, nil, false
	}
	return header, payload, s, true
}

// VerifyES256 checks the token's signature with the certificate's EC public key, as rego's io.jwt.verify_es256
// (the signature only: no claim is looked at).
func VerifyES256(token string, cert *x509.Certificate) bool {
	if cert == nil {
		return false
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return false
	}
	i := strings.LastIndex(token, ".")
	if i < 0 {
		return false
	}
	if _, _, _, ok := Decode(token); !ok {
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(token[i+1:], "="))
	if err != nil || len(sig) != 64 {
		return false
	}
	h := sha256.Sum256([]byte(token[:i]))
	r := new(big.Int).SetBytes(sig[:32])
	s := new(big.Int).SetBytes(sig[32:])
	return ecdsa.Verify(pub, h[:], r, s)
}

func tokensValid(in *Input, _ time.Time) bool {
	for _, t := range in.Tokens {
		if _, _, _, ok := Decode(t); !ok {
			return false
		}
	}
	return true
}

func tokensExpired(in *Input, now time.Time) bool {
	nowSec := float64(now.UnixNano()) / 1e9
	for _, t := range in.Tokens {
		_, p, _, ok := Decode(t)
		if !ok {
			return false
		}
		exp, isNum := p["exp"].(float64)
		if !isNum || !(nowSec < exp) {
			return false
		}
	}
	return true
}

func tokensChained(in *Input, _ time.Time) bool {
	if len(in.Tokens) < 2 {
		return true
	}
	for i := 0; i+1 < len(in.Tokens); i++ {
		_, p1, _, ok1 := Decode(in.Tokens[i])
		_, p2, _, ok2 := Decode(in.Tokens[i+1])
		if !ok1 || !ok2 {
			return false
		}
		sub, hasSub := p2["sub"]
		if !hasSub {
			return false
		}
		found := false
		switch aud := p1["aud"].(type) {
		case []any:
			for _, a := range aud {
				if jsonEqual(a, sub) {
					found = true
				}
			}
		case map[string]any: // rego iterates an object's values too
			for _, a := range aud {
				if jsonEqual(a, sub) {
					found = true
				}
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func jsonEqual(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func prevTokenSigned(in *Input, _ time.Time) bool {
	prev := int(in.Index) - 1
	if prev < 0 || prev >= len(in.Tokens) {
		return false
	}
	return VerifyES256(in.Tokens[prev], in.PeerCert)
}

func nextTokenSigned(in *Input, _ time.Time) bool {
	next := int(in.Index) + 1
	if len(in.Tokens) <= next {
		return false
	}
	return VerifyES256(in.Tokens[next], in.PeerCert)
}

func clientAllowed(in *Input, _ time.Time) bool {
	ids, known := in.PathIDsMap[in.ResourceName]
	if !known {
		return true
	}
	return len(ids) > 0 && ids[0] == in.ResourceID
}

// Sub is the sub claim of a token ("" if none), as upstream's registry reads the caller's id from path segment 0.
func Sub(token string) string {
	_, p, _, ok := Decode(token)
	if !ok {
		return ""
	}
	s, _ := p["sub"].(string)
	return s
}

// Aud is the aud claim as a list (a plain string gives a one-element list; for reports, not for policies).
func Aud(token string) []string {
	_, p, _, ok := Decode(token)
	if !ok {
		return nil
	}
	switch a := p["aud"].(type) {
	case string:
		return []string{a}
	case []any:
		var out []string
		for _, x := range a {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
