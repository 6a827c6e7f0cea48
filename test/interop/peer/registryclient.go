package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/url"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	reg "nsm-ts.local/interop/peer/gen/registry"
	"nsm-ts.local/interop/peer/internal/fdpass"
	"nsm-ts.local/interop/peer/internal/identity"
	"nsm-ts.local/interop/peer/internal/nsm"
	"nsm-ts.local/interop/peer/internal/policy"
)

// registryClient calls a registry (or an nsmgr's registry) as upstream's registry client chains do: the
// caller's token as per-RPC credentials, the registration's private path as JSON in the `path` metadata (the
// server answers the updated path in the `path` header), the NSE's unix URL passed as a descriptor when the
// registry is on a unix socket (sdk registry/common/sendfd), and the default registry client policies (common +
// registry/client_allowed + client/next_token_signed) on every Register and Unregister answer.
type registryClient struct {
	id   *identity.Identity
	url  string
	cc   *grpc.ClientConn
	ns   reg.NetworkServiceRegistryClient
	nse  reg.NetworkServiceEndpointRegistryClient
	mu   sync.Mutex
	nsOw map[string][]string // client_allowed: name → path_ids of our last accepted answer
	nseO map[string][]string
	// Policies is the set applied to answers (nil: none, for a suite that checks by itself).
	Policies []policy.Policy
}

// regCall is what one unary registry call saw besides its answer.
type regCall struct {
	Sent     *nsm.RegistryPath // the path we sent
	Header   *nsm.RegistryPath // the path the server answered (nil: no `path` header)
	PeerCert *x509.Certificate
	Token    string // our token (metadata)
}

func newRegistryClient(id *identity.Identity, raw string) (*registryClient, error) {
	cc, err := dial(raw, id)
	if err != nil {
		return nil, err
	}
	return &registryClient{
		id: id, url: raw, cc: cc,
		ns:       reg.NewNetworkServiceRegistryClient(cc),
		nse:      reg.NewNetworkServiceEndpointRegistryClient(cc),
		nsOw:     map[string][]string{},
		nseO:     map[string][]string{},
		Policies: policy.RegistryClient,
	}, nil
}

func (r *registryClient) Close() { _ = r.cc.Close() }

// opts prepares one call: token credentials (queuing fds on the call's connection), path metadata, header and
// peer capture.
func (r *registryClient) opts(ctx context.Context, path *nsm.RegistryPath, fds *nsm.SendFDs) (context.Context, *regCall, []grpc.CallOption, *metadata.MD, *peer.Peer) {
	if path == nil {
		path = &nsm.RegistryPath{}
	}
	call := &regCall{Sent: path.Clone()}
	creds := &identity.CallCredentials{ID: r.id, OnPeer: func(p *peer.Peer) {
		if t, ok := fdpass.FromPeer(p); ok && fds != nil {
			if err := fds.SendOn(t); err != nil {
				logf("registry sendfd: %v", err)
			}
		}
	}}
	ctx = metadata.AppendToOutgoingContext(ctx, nsm.RegistryPathKey, path.JSON())
	var hdr metadata.MD
	var p peer.Peer
	return ctx, call, []grpc.CallOption{grpc.PerRPCCredentials(creds), grpc.Header(&hdr), grpc.Peer(&p)}, &hdr, &p
}

func (r *registryClient) finish(call *regCall, hdr *metadata.MD, p *peer.Peer, creds []grpc.CallOption) error {
	call.PeerCert = identity.PeerCert(p.AuthInfo)
	for _, o := range creds {
		if c, ok := o.(grpc.PerRPCCredsCallOption); ok {
			call.Token = c.Creds.(*identity.CallCredentials).Sent
		}
	}
	if v := hdr.Get(nsm.RegistryPathKey); len(v) > 0 {
		h, err := nsm.ParseRegistryPath(v[len(v)-1])
		if err != nil {
			return err
		}
		call.Header = h
	}
	return nil
}

// check applies the client policies to an answer for resource `name` (upstream's authorize client: input path =
// the path the server answered, resource_id = sub of its segment 0, the client's own name → path_ids map).
func (r *registryClient) check(owners map[string][]string, name string, call *regCall) error {
	if r.Policies == nil {
		return nil
	}
	path := call.Header
	if path == nil {
		path = call.Sent
	}
	in := &policy.Input{Index: path.Index, Tokens: path.Tokens(), PeerCert: call.PeerCert, ResourceName: name}
	if len(path.PathSegments) > 0 {
		in.ResourceID = policy.Sub(path.PathSegments[0].Token)
	}
	r.mu.Lock()
	in.PathIDsMap = map[string][]string{}
	for k, v := range owners {
		in.PathIDsMap[k] = v
	}
	r.mu.Unlock()
	return policy.Check("registry", r.Policies, in)
}

// RegisterNS registers a NetworkService with `path` (nil for a first registration).
func (r *registryClient) RegisterNS(ctx context.Context, s *reg.NetworkService, path *nsm.RegistryPath) (*reg.NetworkService, *regCall, error) {
	ctx, call, opts, hdr, p := r.opts(ctx, path, nil)
	resp, err := r.ns.Register(ctx, s, opts...)
	if err != nil {
		return nil, call, err
	}
	if err := r.finish(call, hdr, p, opts); err != nil {
		return resp, call, err
	}
	if err := r.check(r.nsOw, resp.GetName(), call); err != nil {
		r.mu.Lock()
		_, known := r.nsOw[resp.GetName()]
		r.mu.Unlock()
		if !known {
			_, _, _ = r.UnregisterNS(context.WithoutCancel(ctx), resp, call.Header, false)
		}
		return resp, call, err
	}
	r.mu.Lock()
	r.nsOw[resp.GetName()] = resp.GetPathIds()
	r.mu.Unlock()
	return resp, call, nil
}

// UnregisterNS unregisters a NetworkService; check applies the client policies to the answer.
func (r *registryClient) UnregisterNS(ctx context.Context, s *reg.NetworkService, path *nsm.RegistryPath, check bool) (*emptypb.Empty, *regCall, error) {
	ctx, call, opts, hdr, p := r.opts(ctx, path, nil)
	resp, err := r.ns.Unregister(ctx, s, opts...)
	if err != nil {
		return nil, call, err
	}
	if err := r.finish(call, hdr, p, opts); err != nil {
		return resp, call, err
	}
	if check {
		if err := r.check(r.nsOw, s.GetName(), call); err != nil {
			return resp, call, err
		}
	}
	r.mu.Lock()
	delete(r.nsOw, s.GetName())
	r.mu.Unlock()
	return resp, call, nil
}

// nseFDs swaps a unix:// NSE URL for inode://<dev>/<ino> and prepares the socket file to go as a descriptor
// (as upstream's registry sendfd client: the swap whatever the transport, the descriptor only where the
// connection carries it).
func (r *registryClient) nseFDs(e *reg.NetworkServiceEndpoint) (*nsm.SendFDs, map[string]string, error) {
	if !isUnix(e.GetUrl()) {
		return nil, nil, nil
	}
	u, err := url.Parse(e.GetUrl())
	if err != nil {
		return nil, nil, err
	}
	k, err := fdpass.KeyOfPath(u.Path)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to convert filename %s to url: %w", u.Path, err)
	}
	back := map[string]string{k.URL(): e.GetUrl()}
	e.Url = k.URL()
	return &nsm.SendFDs{Files: []string{u.Path}, Back: back}, back, nil
}

// RegisterNSE registers an endpoint with `path` (nil for a first registration).
func (r *registryClient) RegisterNSE(ctx context.Context, e *reg.NetworkServiceEndpoint, path *nsm.RegistryPath) (*reg.NetworkServiceEndpoint, *regCall, error) {
	e = cloneNSE(e)
	fds, back, err := r.nseFDs(e)
	if err != nil {
		return nil, nil, err
	}
	ctx, call, opts, hdr, p := r.opts(ctx, path, fds)
	resp, err := r.nse.Register(ctx, e, opts...)
	if err != nil {
		return nil, call, err
	}
	if orig, ok := back[resp.GetUrl()]; ok {
		resp.Url = orig
	}
	if err := r.finish(call, hdr, p, opts); err != nil {
		return resp, call, err
	}
	if err := r.check(r.nseO, resp.GetName(), call); err != nil {
		r.mu.Lock()
		_, known := r.nseO[resp.GetName()]
		r.mu.Unlock()
		if !known {
			_, _, _ = r.UnregisterNSE(context.WithoutCancel(ctx), resp, call.Header, false)
		}
		return resp, call, err
	}
	r.mu.Lock()
	r.nseO[resp.GetName()] = resp.GetPathIds()
	r.mu.Unlock()
	return resp, call, nil
}

// UnregisterNSE unregisters an endpoint; check applies the client policies to the answer.
func (r *registryClient) UnregisterNSE(ctx context.Context, e *reg.NetworkServiceEndpoint, path *nsm.RegistryPath, check bool) (*emptypb.Empty, *regCall, error) {
	e = cloneNSE(e)
	fds, _, err := r.nseFDs(e)
	if err != nil {
		return nil, nil, err
	}
	ctx, call, opts, hdr, p := r.opts(ctx, path, fds)
	resp, err := r.nse.Unregister(ctx, e, opts...)
	if err != nil {
		return nil, call, err
	}
	if err := r.finish(call, hdr, p, opts); err != nil {
		return resp, call, err
	}
	if check {
		if err := r.check(r.nseO, e.GetName(), call); err != nil {
			return resp, call, err
		}
	}
	r.mu.Lock()
	delete(r.nseO, e.GetName())
	r.mu.Unlock()
	return resp, call, nil
}

// FindNSE opens a Find stream (with our token).
func (r *registryClient) FindNSE(ctx context.Context, q *reg.NetworkServiceEndpointQuery) (grpc.ServerStreamingClient[reg.NetworkServiceEndpointResponse], error) {
	return r.nse.Find(ctx, q, grpc.PerRPCCredentials(&identity.CallCredentials{ID: r.id}))
}

// FindNS opens a Find stream (with our token).
func (r *registryClient) FindNS(ctx context.Context, q *reg.NetworkServiceQuery) (grpc.ServerStreamingClient[reg.NetworkServiceResponse], error) {
	return r.ns.Find(ctx, q, grpc.PerRPCCredentials(&identity.CallCredentials{ID: r.id}))
}

func cloneNSE(e *reg.NetworkServiceEndpoint) *reg.NetworkServiceEndpoint {
	return proto.Clone(e).(*reg.NetworkServiceEndpoint)
}
