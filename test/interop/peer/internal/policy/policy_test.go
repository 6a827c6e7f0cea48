package policy_test

import (
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"nsm-ts.local/interop/peer/internal/identity"
	"nsm-ts.local/interop/peer/internal/policy"
	"nsm-ts.local/interop/peer/internal/testpki"
)

var (
	ca    = testpki.New("nsm.test")
	nsc   = ca.Issue("/nsc", time.Hour)
	nsmgr = ca.Issue("/nsmgr", time.Hour)
	fwd   = ca.Issue("/fwd", time.Hour)
	nse   = ca.Issue("/nse", time.Hour)
)

func tok(t *testing.T, signer, aud *identity.Identity) string {
	t.Helper()
	s, _, err := signer.Token(aud.Cert())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func custom(t *testing.T, signer *identity.Identity, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodES256, claims).SignedString(signer.SVID.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The tokens of a local NSC → nsmgr → forwarder → NSE path after the NSE answered: each segment signed by its
// hop for the next one, the last for its caller.
func upstreamPath(t *testing.T) []string {
	return []string{tok(t, nsc, nsmgr), tok(t, nsmgr, fwd), tok(t, fwd, nse), tok(t, nse, fwd)}
}

func failed(t *testing.T, err error) string {
	t.Helper()
	r, ok := policy.AsRefusal(err)
	if !ok {
		t.Fatalf("expected a refusal, got %v", err)
	}
	return r.Policy
}

func TestUpstreamShapedPathPassesServerAndClientPolicies(t *testing.T) {
	p := upstreamPath(t)
	// The NSE (index 3) sees the whole left side; its peer is the forwarder.
	if err := policy.Check("networkservice", policy.Server, &policy.Input{Index: 3, Tokens: p, PeerCert: fwd.Cert()}); err != nil {
		t.Fatal(err)
	}
	// The nsmgr (index 1) sees segments 0..1 when the NSC calls it.
	if err := policy.Check("networkservice", policy.Server, &policy.Input{Index: 1, Tokens: p[:2], PeerCert: nsc.Cert()}); err != nil {
		t.Fatal(err)
	}
	// The NSC checks the full response; its peer is the nsmgr, whose token is at index 1.
	if err := policy.Check("networkservice", policy.Client, &policy.Input{Index: 0, Tokens: p, PeerCert: nsmgr.Cert()}); err != nil {
		t.Fatal(err)
	}
}

func TestTokensValid(t *testing.T) {
	if err := policy.Check("x", []policy.Policy{policy.TokensValid}, &policy.Input{}); err != nil {
		t.Fatal("an empty path must pass:", err)
	}
	for _, bad := range []string{"", "not-a-jwt", "a.b.c", "eyJhbGciOiJFUzI1NiJ9.bm90IGpzb24.c2ln"} {
		err := policy.Check("x", []policy.Policy{policy.TokensValid}, &policy.Input{Tokens: []string{tok(t, nsc, nsmgr), bad}})
		if failed(t, err) != "common/tokens_valid" {
			t.Fatalf("%q", bad)
		}
	}
}

func TestTokensExpired(t *testing.T) {
	old := custom(t, nsc, jwt.MapClaims{"sub": nsc.ID(), "aud": []string{nsmgr.ID()}, "exp": time.Now().Add(-time.Second).Unix()})
	noExp := custom(t, nsc, jwt.MapClaims{"sub": nsc.ID(), "aud": []string{nsmgr.ID()}})
	for name, tk := range map[string]string{"past exp": old, "no exp": noExp} {
		err := policy.Check("x", policy.Client, &policy.Input{Tokens: []string{tk}, PeerCert: nsmgr.Cert()})
		if failed(t, err) != "common/tokens_expired" {
			t.Fatal(name)
		}
	}
}

func TestTokensChained(t *testing.T) {
	exp := time.Now().Add(time.Minute).Unix()
	in := func(first string) *policy.Input {
		return &policy.Input{Index: 1, Tokens: []string{first, tok(t, nsmgr, nsc)}, PeerCert: nsc.Cert()}
	}
	cases := map[string]string{
		"no aud (a token minted before the hop knew its peer)": custom(t, nsc, jwt.MapClaims{"sub": nsc.ID(), "exp": exp}),
		"aud as a plain string (rego iterates only arrays)":    custom(t, nsc, jwt.MapClaims{"sub": nsc.ID(), "aud": nsmgr.ID(), "exp": exp}),
		"aud names someone else":                               custom(t, nsc, jwt.MapClaims{"sub": nsc.ID(), "aud": []string{fwd.ID()}, "exp": exp}),
	}
	for name, first := range cases {
		if got := failed(t, policy.Check("x", policy.Server, in(first))); got != "common/tokens_chained" {
			t.Fatalf("%s: refused by %s", name, got)
		}
	}
	// A single segment has no pair to check.
	lone := custom(t, nsc, jwt.MapClaims{"sub": nsc.ID(), "exp": exp})
	if err := policy.Check("x", []policy.Policy{policy.TokensChained}, &policy.Input{Tokens: []string{lone}}); err != nil {
		t.Fatal(err)
	}
}

func TestPrevAndNextTokenSigned(t *testing.T) {
	p := upstreamPath(t)
	// The nsmgr's caller presents a certificate other than the one that signed segment 0.
	err := policy.Check("networkservice", policy.Server, &policy.Input{Index: 1, Tokens: p[:2], PeerCert: fwd.Cert()})
	if failed(t, err) != "server/prev_token_signed" {
		t.Fatal(err)
	}
	// Index 0 has no previous segment.
	if policy.PrevTokenSigned.Valid(&policy.Input{Index: 0, Tokens: p[:1], PeerCert: nsc.Cert()}, time.Now()) {
		t.Fatal("prev_token_signed passed at index 0")
	}
	// The client's server is not the one that signed segment 1.
	err = policy.Check("networkservice", policy.Client, &policy.Input{Index: 0, Tokens: p, PeerCert: fwd.Cert()})
	if failed(t, err) != "client/next_token_signed" {
		t.Fatal(err)
	}
	// A response with no segment after ours.
	if policy.NextTokenSigned.Valid(&policy.Input{Index: 0, Tokens: p[:1], PeerCert: nsmgr.Cert()}, time.Now()) {
		t.Fatal("next_token_signed passed without a next segment")
	}
	// A signature that is not ES256 over the token (tampered payload).
	parts := strings.Split(p[1], ".")
	forged := parts[0] + "." + strings.TrimRight(parts[1], "A") + "A." + parts[2]
	if policy.VerifyES256(forged, nsmgr.Cert()) {
		t.Fatal("a tampered token verified")
	}
}

func TestRegistryClientAllowed(t *testing.T) {
	m := map[string][]string{"nse-1": {nsc.ID(), "spiffe://nsm.test/registry"}}
	ok := func(name, id string) bool {
		return policy.ClientAllowed.Valid(&policy.Input{ResourceName: name, ResourceID: id, PathIDsMap: m}, time.Now())
	}
	if !ok("nse-2", fwd.ID()) {
		t.Fatal("a new name must be allowed to anyone")
	}
	if !ok("nse-1", nsc.ID()) {
		t.Fatal("the first registrant must be allowed")
	}
	if ok("nse-1", fwd.ID()) {
		t.Fatal("another identity must not take over a name")
	}
	m["nse-3"] = nil
	if ok("nse-3", nsc.ID()) {
		t.Fatal("a name stored with no path ids has no owner to match")
	}
}

func TestRefusalIsPermissionDeniedWithUpstreamText(t *testing.T) {
	err := policy.Check("networkservice", policy.Server, &policy.Input{Index: 1, Tokens: []string{"", ""}})
	st := status.Convert(err)
	if st.Code() != codes.PermissionDenied {
		t.Fatalf("code %v", st.Code())
	}
	if !strings.Contains(st.Message(), "no sufficient privileges") || !strings.HasPrefix(st.Message(), "networkservice: ") {
		t.Fatalf("message %q", st.Message())
	}
}

func TestTokenShape(t *testing.T) {
	short := ca.Issue("/short-lived", 30*time.Second)
	s, exp, err := nsc.Token(short.Cert())
	if err != nil {
		t.Fatal(err)
	}
	h, p, sig, ok := policy.Decode(s)
	if !ok || len(sig) != 64 {
		t.Fatalf("not an ES256 JWT: %q", s)
	}
	if h["alg"] != "ES256" || h["jwk"] != nil || h["x5c"] != nil || h["kid"] != nil {
		t.Fatalf("header %v", h)
	}
	if p["sub"] != nsc.ID() {
		t.Fatalf("sub %v", p["sub"])
	}
	if aud, isList := p["aud"].([]any); !isList || len(aud) != 1 || aud[0] != short.ID() {
		t.Fatalf("aud %#v must be a one-element JSON array of the peer's ID", p["aud"])
	}
	if d := time.Until(exp); d > 31*time.Second || d < 25*time.Second {
		t.Fatalf("exp %v is not capped by the peer certificate's NotAfter", exp)
	}
	if !policy.VerifyES256(s, nsc.Cert()) || policy.VerifyES256(s, nsmgr.Cert()) {
		t.Fatal("signature check")
	}
	// Without a peer certificate there is no aud.
	s2, _, _ := nsc.Token(nil)
	if _, p2, _, _ := policy.Decode(s2); p2["aud"] != nil {
		t.Fatalf("aud %v without a peer", p2["aud"])
	}
	if d := time.Until(time.Unix(int64(p["exp"].(float64)), 0)); d > identity.DefaultMaxTokenLifetime {
		t.Fatal("exp beyond the max token lifetime")
	}
}
