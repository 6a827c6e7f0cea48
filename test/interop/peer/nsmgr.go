package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	ns "nsm-ts.local/interop/peer/gen/networkservice"
	"nsm-ts.local/interop/peer/internal/fdpass"
	"nsm-ts.local/interop/peer/internal/identity"
	"nsm-ts.local/interop/peer/internal/nsm"
	"nsm-ts.local/interop/peer/internal/policy"
)

// nsmgr is an upstream-like nsmgr and a no-op forwarder in one process, two hops on the path:
//
//   - nsmgr hop: updatepath, updatetoken, authorize (default server policies), then recvfd server that INSISTS
//     on descriptors: every inode:// URL of the request (preferences and mechanism) waits for its descriptor
//     until the call's deadline and fails as upstream ("timeout in recvfd waiting for inode://…");
//   - forwarder hop: its own segment and token (signed with the same SVID: the nsmgr → forwarder leg is in
//     process), authorize (server policies) on entry and (client policies) on the forwarder's answer;
//   - the forwarder's client towards --endpoint: mechanism translation (the endpoint gets a fresh KERNEL
//     preference carrying the client's namespace, which sendfd passes on as a descriptor), the token for the
//     endpoint, the default client policies on its answer, and recvfd client: on a unix endpoint, the KERNEL
//     mechanism it answers must name its namespace as inode:// and that descriptor must arrive (an upstream kernel
//     forwarder cannot plumb the endpoint's side without it);
//   - the answer to the caller carries the caller's own mechanism (as a forwarder's incoming leg), the
//     endpoint's context and the full path; no data plane (as upstream's test forwarders).
type nsmgr struct {
	ns.UnimplementedNetworkServiceServer
	mgr, fwd hop
	id       *identity.Identity
	endpoint string
	client   ns.NetworkServiceClient
	monitor  *nsm.Monitor

	mu    sync.Mutex
	conns map[string]*mgrConn // by the nsmgr segment id
}

type mgrConn struct {
	in, out *nsm.Files
	// outConn is the connection as the endpoint last answered it (for Close).
	outConn *ns.Connection
}

func runNsmgr(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("nsmgr", flag.ExitOnError)
	var idf identityFlags
	idf.register(fs)
	listenOn := fs.String("listen-on", "", "unix:///path or tcp://host:port to serve on")
	endpointURL := fs.String("endpoint", "", "the endpoint every request goes to")
	name := fs.String("name", "nsmgr-interop", "the nsmgr's segment name")
	fwdName := fs.String("forwarder-name", "", "the forwarder's segment name (default <name>-forwarder)")
	_ = fs.Parse(args)
	if *listenOn == "" || *endpointURL == "" {
		fmt.Fprintln(os.Stderr, "nsmgr: --listen-on and --endpoint are required")
		return 2
	}
	if *fwdName == "" {
		*fwdName = *name + "-forwarder"
	}
	id, err := idf.load()
	if err != nil {
		emit(map[string]any{"event": "error", "code": "InvalidArgument", "message": err.Error()})
		return 2
	}
	cc, err := dial(*endpointURL, id)
	if err != nil {
		emit(map[string]any{"event": "error", "code": "InvalidArgument", "message": err.Error()})
		return 2
	}
	defer cc.Close()
	m := &nsmgr{
		mgr: hop{name: *name, id: id}, fwd: hop{name: *fwdName, id: id}, id: id,
		endpoint: *endpointURL, client: ns.NewNetworkServiceClient(cc), monitor: nsm.NewMonitor(),
		conns: map[string]*mgrConn{},
	}
	lis, err := listen(*listenOn)
	if err != nil {
		emit(map[string]any{"event": "error", "code": "Unavailable", "message": err.Error()})
		return 1
	}
	srv := grpc.NewServer(grpc.Creds(id.ServerCredentials()))
	ns.RegisterNetworkServiceServer(srv, m)
	ns.RegisterMonitorConnectionServer(srv, m.monitor)
	h := health.NewServer()
	for _, s := range []string{"networkservice.NetworkService", "connection.MonitorConnection"} {
		h.SetServingStatus(s, healthpb.HealthCheckResponse_SERVING)
	}
	healthpb.RegisterHealthServer(srv, h)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	emit(map[string]any{"event": "ready", "name": *name, "id": id.ID(), "url": *listenOn, "endpoint": *endpointURL})
	<-ctx.Done()
	return 0
}

// fail reports a failed Request or Close and returns err.
func (m *nsmgr) fail(method, stage string, err error) error {
	f := errorFields(err)
	f["event"] = "request-failed"
	f["method"] = method
	f["stage"] = stage
	emit(f)
	logf("%s: %s failed at %s: %v", m.mgr.name, method, stage, err)
	return err
}

func (m *nsmgr) state(id string) *mgrConn {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, ok := m.conns[id]
	if !ok {
		st = &mgrConn{in: nsm.NewFiles(), out: nsm.NewFiles()}
		m.conns[id] = st
	}
	return st
}

func (m *nsmgr) forget(id string) *mgrConn {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.conns[id]
	delete(m.conns, id)
	return st
}

// enterForwarder is the in-process nsmgr → forwarder leg: the nsmgr's segment gets the token the nsmgr sends
// the forwarder, the forwarder's segment its own, both for this SVID, and the forwarder checks the server
// policies with the nsmgr's (our own) certificate as its peer.
func (m *nsmgr) enterForwarder(conn *ns.Connection, method string) error {
	tok, exp, err := m.id.Token(m.id.Cert())
	if err != nil {
		return err
	}
	_, err = m.fwd.enter(conn, incomingCall{token: tok, expires: exp}, m.id.Cert(), method)
	return err
}

func (m *nsmgr) Request(ctx context.Context, req *ns.NetworkServiceRequest) (*ns.Connection, error) {
	req = proto.Clone(req).(*ns.NetworkServiceRequest)
	if req.Connection == nil {
		req.Connection = &ns.Connection{}
	}
	conn := req.Connection
	call := incoming(ctx)
	callerIndex, err := m.mgr.enter(conn, call, call.cert, "Request")
	if err != nil {
		return nil, err
	}
	mgrID := conn.Id
	st := m.state(mgrID)

	// recvfd server, insisting.
	var clientFds []map[string]any
	for _, mech := range nsm.AllMechanisms(req) {
		raw := mech.GetParameters()[nsm.InodeURLKey]
		f, err := st.in.Recv(ctx, call.fds, mech.Parameters)
		if err != nil {
			m.forget(mgrID).in.Close()
			return nil, m.fail("Request", "recvfd", err)
		}
		if f != nil {
			clientFds = append(clientFds, netnsReport(raw, f))
		}
	}
	incomingMech := cloneMech(nsm.KernelPreference(req))
	if incomingMech == nil {
		return nil, m.fail("Request", "mechanisms", status.Error(codes.InvalidArgument, "cannot support any of the requested mechanism"))
	}
	incomingMech.Cls = nsm.ClsLocal

	if err := m.enterForwarder(conn, "Request"); err != nil {
		return nil, err
	}

	// The forwarder's outgoing request: mechanism translation, the client's namespace passed on.
	out := &ns.NetworkServiceRequest{Connection: cloneConn(conn)}
	out.Connection.Mechanism = nil
	pref := &ns.Mechanism{Cls: nsm.ClsLocal, Type: nsm.KernelType, Parameters: map[string]string{}}
	if n := incomingMech.Parameters[nsm.IfNameKey]; n != "" {
		pref.Parameters[nsm.IfNameKey] = n
	}
	if u := incomingMech.Parameters[nsm.InodeURLKey]; u != "" {
		pref.Parameters[nsm.InodeURLKey] = u
	}
	out.MechanismPreferences = []*ns.Mechanism{pref}
	// sendfd client: upstream swaps file:// for inode:// whatever the transport; the descriptor itself goes only
	// where the connection can carry it (unix).
	fds := &nsm.SendFDs{}
	if err := fds.Swap(pref.Parameters); err != nil {
		return nil, m.fail("Request", "sendfd", err)
	}
	var p peer.Peer
	var outFds fdpass.Transceiver
	creds := &identity.CallCredentials{ID: m.id, OnPeer: func(pr *peer.Peer) {
		if t, ok := fdpass.FromPeer(pr); ok {
			outFds = t
			if err := fds.SendOn(t); err != nil {
				logf("sendfd: %v", err)
			}
		}
	}}
	resp, err := m.client.Request(ctx, out, grpc.PerRPCCredentials(creds), grpc.Peer(&p))
	if err != nil {
		return nil, m.fail("Request", "endpoint", err)
	}
	endpointCert := identity.PeerCert(p.AuthInfo)
	// authorize client (the forwarder's): common + next_token_signed by the endpoint.
	in := &policy.Input{Index: resp.GetPath().GetIndex(), Tokens: nsm.Tokens(resp.GetPath(), -1), PeerCert: endpointCert}
	if err := policy.Check("networkservice", policy.Client, in); err != nil {
		r, _ := policy.AsRefusal(err)
		emit(map[string]any{"event": "refused", "hop": m.fwd.name, "method": "Request (answer)", "policy": r.Policy, "endpoint": identity.IDOf(endpointCert)})
		_, _ = m.client.Close(context.WithoutCancel(ctx), resp, grpc.PerRPCCredentials(&identity.CallCredentials{ID: m.id}))
		m.forget(mgrID)
		return nil, m.fail("Request", "authorize-client", err)
	}
	stored := cloneConn(resp)

	// recvfd client, insisting on a unix endpoint: on the answer as the endpoint sent it (upstream's sendfd client,
	// nearer the wire, would first turn an inode URL it sent itself back into its file:// URL, so an endpoint in
	// the client's own namespace would not be waited for; we check what the endpoint sent).
	var endpointFd map[string]any
	if isUnix(m.endpoint) {
		params := resp.GetMechanism().GetParameters()
		raw := params[nsm.InodeURLKey]
		if _, perr := fdpass.ParseInodeURL(raw); perr != nil {
			err := status.Errorf(codes.FailedPrecondition,
				"the endpoint at %s answered mechanism %s with inodeURL %q, not inode://<dev>/<ino> with its descriptor: a kernel forwarder cannot reach its namespace",
				m.endpoint, resp.GetMechanism().GetType(), raw)
			_, _ = m.client.Close(context.WithoutCancel(ctx), stored, grpc.PerRPCCredentials(&identity.CallCredentials{ID: m.id}))
			m.forget(mgrID).in.Close()
			return nil, m.fail("Request", "recvfd-client", err)
		}
		f, err := st.out.Recv(ctx, outFds, params)
		if err != nil {
			_, _ = m.client.Close(context.WithoutCancel(ctx), stored, grpc.PerRPCCredentials(&identity.CallCredentials{ID: m.id}))
			gone := m.forget(mgrID)
			gone.in.Close()
			gone.out.Close()
			return nil, m.fail("Request", "recvfd-client", err)
		}
		endpointFd = netnsReport(raw, f)
	}

	// The answer: the caller's mechanism, the endpoint's context and path, the caller's view.
	final := cloneConn(resp)
	final.Mechanism = incomingMech
	st.in.SwapBack(final.Mechanism.Parameters)
	final.State = ns.State_UP
	m.mu.Lock()
	st.outConn = stored
	m.mu.Unlock()
	mine := cloneConn(final)
	nsm.Restore(mine, callerIndex+1)
	m.monitor.Update(mine)
	nsm.Restore(final, callerIndex)

	clientOK := len(clientFds) > 0
	for _, r := range clientFds {
		clientOK = clientOK && r["isNetns"] == true
	}
	emit(map[string]any{"event": "request", "connection": final, "caller": identity.IDOf(call.cert), "endpoint": identity.IDOf(endpointCert),
		"clientFds": clientFds, "clientNetnsFdOK": clientOK, "endpointFd": endpointFd,
		"endpointNetnsFdOK": endpointFd != nil && endpointFd["isNetns"] == true, "endpointAnswer": stored})
	return final, nil
}

func (m *nsmgr) Close(ctx context.Context, conn *ns.Connection) (*emptypb.Empty, error) {
	conn = cloneConn(conn)
	call := incoming(ctx)
	if _, err := m.mgr.enter(conn, call, call.cert, "Close"); err != nil {
		return nil, err
	}
	mgrID := conn.Id
	m.mu.Lock()
	st, known := m.conns[mgrID]
	m.mu.Unlock()
	if !known {
		emit(map[string]any{"event": "close", "known": false, "id": mgrID})
		return &emptypb.Empty{}, nil
	}
	if conn.GetMechanism() != nil {
		if _, err := st.in.Recv(ctx, call.fds, conn.Mechanism.Parameters); err != nil {
			return nil, m.fail("Close", "recvfd", err)
		}
	}
	mine := cloneConn(conn)
	if err := m.enterForwarder(conn, "Close"); err != nil {
		return nil, err
	}
	m.mu.Lock()
	out := cloneConn(st.outConn)
	m.mu.Unlock()
	out.Path = cloneConn(conn).Path
	out.Id = conn.Id
	var closeErr error
	if _, err := m.client.Close(ctx, out, grpc.PerRPCCredentials(&identity.CallCredentials{ID: m.id})); err != nil {
		closeErr = m.fail("Close", "endpoint", err)
	}
	m.forget(mgrID)
	st.in.Close()
	st.out.Close()
	m.monitor.Delete(mine)
	emit(map[string]any{"event": "close", "known": true, "id": mgrID, "caller": identity.IDOf(call.cert)})
	if closeErr != nil {
		return nil, closeErr
	}
	return &emptypb.Empty{}, nil
}
