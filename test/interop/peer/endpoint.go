package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	ns "nsm-ts.local/interop/peer/gen/networkservice"
	reg "nsm-ts.local/interop/peer/gen/registry"
	"nsm-ts.local/interop/peer/internal/fdpass"
	"nsm-ts.local/interop/peer/internal/identity"
	"nsm-ts.local/interop/peer/internal/nsm"
)

// endpoint is an upstream-like NSE (cmd-nse-icmp-responder's chain without a data plane): the endpoint prefix
// (updatepath, begin, updatetoken, authorize with the default server policies, monitor, trimpath), the KERNEL
// mechanism server (its own namespace as file://, the interface name when the client gave none),
// point-to-point IPAM from a CIDR, and sendfd server (the file:// namespace goes back as inode:// plus the
// descriptor on unix sockets). Upstream's NSE has no recvfd element; this one reports (without waiting) any
// descriptor that came with an inode:// URL of the request, so tests can see what a hop passed on.
type endpoint struct {
	ns.UnimplementedNetworkServiceServer
	hop
	service string
	netns   string
	prefix  netip.Prefix
	monitor *nsm.Monitor

	fault string

	mu    sync.Mutex
	conns map[string]*epConn // by this hop's segment id
	used  map[netip.Addr]bool
}

type epConn struct {
	src, dst netip.Addr
	files    *nsm.Files
}

func runEndpoint(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("endpoint", flag.ExitOnError)
	var idf identityFlags
	idf.register(fs)
	listenOn := fs.String("listen-on", "", "unix:///path or tcp://host:port to serve on")
	name := fs.String("name", "nse-interop", "endpoint name (its path segment and registration)")
	service := fs.String("service", "", "network service served")
	registerTo := fs.String("register-to", "", "registry (or nsmgr) URL to register the NS and the NSE with")
	cidr := fs.String("cidr", "169.254.100.0/24", "point-to-point address pool")
	netnsFile := fs.String("netns-file", "/proc/self/ns/net", "the endpoint's network namespace file (sent as a descriptor)")
	payload := fs.String("payload", "ETHERNET", "payload of the NetworkService it registers (cmd-nse-icmp-responder's default)")
	fault := fs.String("fault", "", "misbehave on purpose (tests): bad-signature (its segment's token signed with a key that is not its SVID's)")
	_ = fs.Parse(args)
	if *listenOn == "" || *service == "" {
		fmt.Fprintln(os.Stderr, "endpoint: --listen-on and --service are required")
		return 2
	}
	id, err := idf.load()
	if err != nil {
		emit(map[string]any{"event": "error", "code": "InvalidArgument", "message": err.Error()})
		return 2
	}
	prefix, err := netip.ParsePrefix(*cidr)
	if err != nil {
		emit(map[string]any{"event": "error", "code": "InvalidArgument", "message": err.Error()})
		return 2
	}
	e := &endpoint{
		hop:     hop{name: *name, id: id},
		service: *service,
		netns:   *netnsFile,
		prefix:  prefix.Masked(),
		monitor: nsm.NewMonitor(),
		conns:   map[string]*epConn{},
		used:    map[netip.Addr]bool{},
		fault:   *fault,
	}
	lis, err := listen(*listenOn)
	if err != nil {
		emit(map[string]any{"event": "error", "code": "Unavailable", "message": err.Error()})
		return 1
	}
	srv := grpc.NewServer(grpc.Creds(id.ServerCredentials()))
	ns.RegisterNetworkServiceServer(srv, e)
	ns.RegisterMonitorConnectionServer(srv, e.monitor)
	h := health.NewServer()
	for _, s := range []string{"networkservice.NetworkService", "connection.MonitorConnection"} {
		h.SetServingStatus(s, healthpb.HealthCheckResponse_SERVING)
	}
	healthpb.RegisterHealthServer(srv, h)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	var registration *registration
	if *registerTo != "" {
		registration, err = register(ctx, id, *registerTo, &reg.NetworkService{Name: *service, Payload: *payload},
			&reg.NetworkServiceEndpoint{Name: *name, NetworkServiceNames: []string{*service}, Url: *listenOn})
		if err != nil {
			f := errorFields(err)
			f["event"] = "error"
			f["stage"] = "register"
			emit(f)
			return 1
		}
	}
	emit(map[string]any{"event": "ready", "name": *name, "id": id.ID(), "url": *listenOn, "service": *service})
	<-ctx.Done()
	if registration != nil {
		registration.unregister()
	}
	return 0
}

func (e *endpoint) Request(ctx context.Context, req *ns.NetworkServiceRequest) (*ns.Connection, error) {
	req = proto.Clone(req).(*ns.NetworkServiceRequest)
	if req.Connection == nil {
		req.Connection = &ns.Connection{}
	}
	conn := req.Connection
	call := incoming(ctx)
	prev, err := e.enter(conn, call, call.cert, "Request")
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	st, refresh := e.conns[conn.Id]
	if !refresh {
		st = &epConn{files: nsm.NewFiles()}
	}
	e.mu.Unlock()

	// What the caller passed along with inode:// URLs (reported, never waited for).
	var passed []map[string]any
	for _, m := range nsm.AllMechanisms(req) {
		raw := m.GetParameters()[nsm.InodeURLKey]
		if _, err := fdpass.ParseInodeURL(raw); err == nil {
			passed = append(passed, netnsReport(raw, st.files.TryRecv(call.fds, m.Parameters)))
		}
	}

	// mechanisms{KERNEL}: the connection's mechanism if it is set (a refresh), else the first KERNEL preference.
	pref := nsm.KernelPreference(req)
	if pref == nil {
		return nil, status.Error(codes.InvalidArgument, "cannot support any of the requested mechanism")
	}
	mech := cloneMech(pref)
	mech.Cls = nsm.ClsLocal
	if mech.Parameters[nsm.IfNameKey] == "" {
		mech.Parameters[nsm.IfNameKey] = ifName(conn.GetNetworkService())
	}
	mech.Parameters[nsm.InodeURLKey] = "file://" + e.netns
	conn.Mechanism = mech

	// point-to-point IPAM, the same pair again on a refresh.
	if !refresh {
		if st.src, st.dst, err = e.allocate(); err != nil {
			return nil, status.Error(codes.ResourceExhausted, err.Error())
		}
	}
	if conn.Context == nil {
		conn.Context = &ns.ConnectionContext{}
	}
	conn.Context.IpContext = &ns.IPContext{
		SrcIpAddrs: []string{st.src.String() + "/32"},
		DstIpAddrs: []string{st.dst.String() + "/32"},
		SrcRoutes:  []*ns.Route{{Prefix: st.dst.String() + "/32"}},
		DstRoutes:  []*ns.Route{{Prefix: st.src.String() + "/32"}},
	}
	conn.State = ns.State_UP
	if e.fault == "bad-signature" {
		if err := e.forgeOwnToken(conn, call); err != nil {
			return nil, err
		}
	}

	// trimpath: the last hop keeps no segment after its own.
	conn.Path.PathSegments = conn.Path.PathSegments[:conn.Path.Index+1]
	e.mu.Lock()
	e.conns[conn.Id] = st
	e.mu.Unlock()
	e.monitor.Update(conn)

	// sendfd server: our namespace goes back as inode:// plus its descriptor (unix sockets only, as upstream:
	// without a descriptor-passing connection the file:// URL stays as it is).
	var sent string
	if call.fds != nil {
		var s nsm.SendFDs
		if err := s.Swap(conn.Mechanism.Parameters); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		if err := s.SendOn(call.fds); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		sent = conn.Mechanism.Parameters[nsm.InodeURLKey]
	}
	nsm.Restore(conn, prev)

	ok := len(passed) > 0
	for _, p := range passed {
		ok = ok && p["received"] == true && p["isNetns"] == true
	}
	ev := map[string]any{"event": "request", "refresh": refresh, "connection": conn, "caller": identity.IDOf(call.cert),
		"passedFds": passed, "netnsFdOK": ok, "sentNetns": sent, "callerToken": call.token}
	emit(ev)
	return conn, nil
}

func (e *endpoint) Close(ctx context.Context, conn *ns.Connection) (*emptypb.Empty, error) {
	conn = cloneConn(conn)
	call := incoming(ctx)
	if _, err := e.enter(conn, call, call.cert, "Close"); err != nil {
		return nil, err
	}
	e.mu.Lock()
	st, ok := e.conns[conn.Id]
	delete(e.conns, conn.Id)
	if ok {
		delete(e.used, st.src)
		delete(e.used, st.dst)
	}
	e.mu.Unlock()
	if ok {
		st.files.Close()
		e.monitor.Delete(conn)
	}
	emit(map[string]any{"event": "close", "known": ok, "id": conn.Id, "caller": identity.IDOf(call.cert)})
	return &emptypb.Empty{}, nil
}

// forgeOwnToken re-signs this hop's segment token with a throw-away key (same claims): the next hop's
// client/next_token_signed must refuse it.
func (e *endpoint) forgeOwnToken(conn *ns.Connection, call incomingCall) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	other := &identity.Identity{SVID: &x509svid.SVID{ID: e.id.SVID.ID, Certificates: e.id.SVID.Certificates, PrivateKey: key},
		Bundle: e.id.Bundle, MaxTokenLifetime: e.id.MaxTokenLifetime}
	tok, _, err := other.Token(call.cert)
	if err != nil {
		return err
	}
	conn.Path.PathSegments[conn.Path.Index].Token = tok
	return nil
}

func (e *endpoint) allocate() (src, dst netip.Addr, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var free []netip.Addr
	for a := e.prefix.Addr().Next(); e.prefix.Contains(a) && len(free) < 2; a = a.Next() {
		if !e.used[a] && e.prefix.Contains(a.Next()) {
			free = append(free, a)
		}
	}
	if len(free) < 2 {
		return src, dst, fmt.Errorf("no free addresses left in %s", e.prefix)
	}
	dst, src = free[0], free[1]
	e.used[src], e.used[dst] = true, true
	return src, dst, nil
}

// ifName is upstream's default: the service name cut to 10 characters, "-", random letters up to 15.
func ifName(service string) string {
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	if len(service) > 10 {
		service = service[:10]
	}
	b := make([]byte, 15-len(service)-1)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return service + "-" + string(b)
}

// registration keeps an NSE registered as upstream's registry client does: NS first, then NSE; refresh at 2/3
// of the time left to the answered expiration_time (with the registration as answered, expiration cleared, and
// the path the server answered); Unregister on shutdown.
type registration struct {
	rc   *registryClient
	nse  *reg.NetworkServiceEndpoint
	path *nsm.RegistryPath
	stop context.CancelFunc
	done chan struct{}
	mu   sync.Mutex
}

func register(ctx context.Context, id *identity.Identity, url string, s *reg.NetworkService, e *reg.NetworkServiceEndpoint) (*registration, error) {
	rc, err := newRegistryClient(id, url)
	if err != nil {
		return nil, err
	}
	callCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	nsResp, nsCall, err := rc.RegisterNS(callCtx, s, nil)
	if err != nil {
		return nil, fmt.Errorf("registering NetworkService %s: %w", s.Name, err)
	}
	emit(map[string]any{"event": "registered-ns", "ns": nsResp, "path": nsCall.Header})
	resp, call, err := rc.RegisterNSE(callCtx, e, nil)
	if err != nil {
		return nil, fmt.Errorf("registering NetworkServiceEndpoint %s: %w", e.Name, err)
	}
	emit(map[string]any{"event": "registered", "nse": resp, "path": call.Header, "sentFd": isUnix(url) && isUnix(e.Url)})
	loopCtx, stop := context.WithCancel(context.Background())
	r := &registration{rc: rc, nse: resp, path: call.Header, stop: stop, done: make(chan struct{})}
	go r.refreshLoop(loopCtx)
	return r, nil
}

func (r *registration) refreshLoop(ctx context.Context) {
	defer close(r.done)
	for {
		r.mu.Lock()
		exp := r.nse.GetExpirationTime()
		r.mu.Unlock()
		if exp == nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Until(exp.AsTime()) / 3):
		}
		r.mu.Lock()
		next := proto.Clone(r.nse).(*reg.NetworkServiceEndpoint)
		next.ExpirationTime = nil
		path := r.path
		r.mu.Unlock()
		callCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
		resp, call, err := r.rc.RegisterNSE(callCtx, next, path)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			logf("refreshing the registration of %s: %v (retrying in 200ms)", next.Name, err)
			emit(map[string]any{"event": "refresh-failed", "error": errorFields(err)})
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		r.mu.Lock()
		r.nse, r.path = resp, call.Header
		r.mu.Unlock()
		emit(map[string]any{"event": "registration-refreshed", "nse": resp})
	}
}

func (r *registration) unregister() {
	r.stop()
	<-r.done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r.mu.Lock()
	e, path := proto.Clone(r.nse).(*reg.NetworkServiceEndpoint), r.path
	r.mu.Unlock()
	_, _, err := r.rc.UnregisterNSE(ctx, e, path, true)
	if err != nil {
		f := errorFields(err)
		f["event"] = "unregister-failed"
		emit(f)
	} else {
		emit(map[string]any{"event": "unregistered", "name": e.Name})
	}
	r.rc.Close()
}
