package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	ns "nsm-ts.local/interop/peer/gen/networkservice"
	"nsm-ts.local/interop/peer/internal/fdpass"
	"nsm-ts.local/interop/peer/internal/identity"
	"nsm-ts.local/interop/peer/internal/nsm"
	"nsm-ts.local/interop/peer/internal/policy"
)

var outMu sync.Mutex

// emit prints one JSON object per line on stdout (results); proto messages inside are protojson with the proto
// field names (path_segments, network_service, ...), as upstream's JSON forms.
func emit(fields map[string]any) {
	for k, v := range fields {
		if m, ok := v.(proto.Message); ok {
			b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
			if err == nil {
				fields[k] = json.RawMessage(b)
			}
		}
	}
	b, err := json.Marshal(fields)
	if err != nil {
		b = []byte(fmt.Sprintf(`{"event":"internal-error","message":%q}`, err.Error()))
	}
	outMu.Lock()
	defer outMu.Unlock()
	_, _ = os.Stdout.Write(append(b, '\n'))
}

// logf writes a log line on stderr.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// identityFlags are the flags every subcommand takes for its SVID.
type identityFlags struct {
	cert, key, ca string
	maxTokenLife  time.Duration
}

func (f *identityFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.cert, "cert-file", "", "X.509-SVID (leaf first) PEM file")
	fs.StringVar(&f.key, "key-file", "", "PKCS#8 private key PEM file")
	fs.StringVar(&f.ca, "ca-file", "", "trust bundle PEM file (the SVID's trust domain)")
	fs.DurationVar(&f.maxTokenLife, "max-token-lifetime", identity.DefaultMaxTokenLifetime, "lifetime of the tokens this peer signs")
}

func (f *identityFlags) load() (*identity.Identity, error) {
	if f.cert == "" || f.key == "" || f.ca == "" {
		return nil, errors.New("--cert-file, --key-file and --ca-file are required (mTLS on every connection, as upstream)")
	}
	id, err := identity.Load(f.cert, f.key, f.ca)
	if err != nil {
		return nil, err
	}
	id.MaxTokenLifetime = f.maxTokenLife
	return id, nil
}

// listen opens unix:///path (replacing a stale socket file) or tcp://host:port.
func listen(raw string) (net.Listener, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "unix":
		if err := os.MkdirAll(filepath.Dir(u.Path), 0o755); err != nil {
			return nil, err
		}
		_ = os.Remove(u.Path)
		return net.Listen("unix", u.Path)
	case "tcp":
		return net.Listen("tcp", u.Host)
	}
	return nil, fmt.Errorf("%q: listen on unix:///path or tcp://host:port", raw)
}

// dial connects to unix:///path or tcp://host:port with mTLS (and descriptor passing on unix).
func dial(raw string, id *identity.Identity) (*grpc.ClientConn, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	var target string
	switch u.Scheme {
	case "unix":
		target = "unix://" + u.Path
	case "tcp":
		target = "passthrough:///" + u.Host
	default:
		return nil, fmt.Errorf("%q: dial unix:///path or tcp://host:port", raw)
	}
	return grpc.NewClient(target, grpc.WithTransportCredentials(id.ClientCredentials()))
}

func isUnix(raw string) bool { return strings.HasPrefix(raw, "unix://") }

// incomingCall is what a server hop learns about a call: the caller's TLS certificate, the token it presented
// (metadata nsm-client-token / -expires) and the descriptor transceiver of its connection (unix only).
type incomingCall struct {
	cert    *x509.Certificate
	token   string
	expires time.Time
	fds     fdpass.Transceiver
}

func incoming(ctx context.Context) incomingCall {
	c := incomingCall{cert: identity.PeerCertFromContext(ctx)}
	if p, ok := peer.FromContext(ctx); ok {
		c.fds, _ = fdpass.FromPeer(p)
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(identity.TokenKey); len(v) == 1 {
			c.token = v[0]
		}
		if v := md.Get(identity.ExpiresKey); len(v) == 1 {
			c.expires, _ = time.Parse(time.RFC3339Nano, v[0])
		}
	}
	return c
}

// hop is the common server prefix of every upstream hop: updatepath, updatetoken, authorize (default server
// policies on the left side of the path).
type hop struct {
	name string
	id   *identity.Identity
}

// enter moves conn onto this hop's segment, signs it for the caller, takes the caller's token into the previous
// segment and checks the server policies. It returns the caller's index (to restore on the way back).
func (h *hop) enter(conn *ns.Connection, caller incomingCall, peerCert *x509.Certificate, method string) (uint32, error) {
	prev, err := nsm.UpdatePath(conn, h.name)
	if err != nil {
		return 0, err
	}
	own, exp, err := h.id.Token(peerCert)
	if err != nil {
		return 0, err
	}
	if err := nsm.UpdateTokenServer(conn, caller.token, caller.expires, own, exp); err != nil {
		return 0, err
	}
	idx := conn.GetPath().GetIndex()
	in := &policy.Input{Index: idx, Tokens: nsm.Tokens(conn.GetPath(), int(idx)+1), PeerCert: peerCert}
	if err := policy.Check("networkservice", policy.Server, in); err != nil {
		r, _ := policy.AsRefusal(err)
		logf("%s: %s refused: policy failed: %s", h.name, method, r.Policy)
		emit(map[string]any{"event": "refused", "hop": h.name, "method": method, "policy": r.Policy, "caller": identity.IDOf(peerCert)})
		return 0, err
	}
	return prev, nil
}

// errorFields describes an error for a JSON line: gRPC code name, message, and the policy of a refusal.
func errorFields(err error) map[string]any {
	f := map[string]any{"code": status.Code(err).String(), "message": err.Error()}
	if st, ok := status.FromError(err); ok {
		f["message"] = st.Message()
	}
	if r, ok := policy.AsRefusal(err); ok {
		f["policy"] = r.Policy
		f["code"] = "PermissionDenied"
	}
	return f
}

// netnsReport describes a received descriptor that should be a network namespace.
func netnsReport(inodeURL string, f *os.File) map[string]any {
	if f == nil {
		return map[string]any{"url": inodeURL, "received": false}
	}
	return map[string]any{"url": inodeURL, "received": true, "isNetns": fdpass.IsNetns(f), "file": f.Name()}
}

func cloneConn(c *ns.Connection) *ns.Connection { return proto.Clone(c).(*ns.Connection) }

func cloneMech(m *ns.Mechanism) *ns.Mechanism {
	if m == nil {
		return nil
	}
	c := proto.Clone(m).(*ns.Mechanism)
	if c.Parameters == nil {
		c.Parameters = map[string]string{}
	}
	return c
}
