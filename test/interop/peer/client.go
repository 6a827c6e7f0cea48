package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"

	ns "nsm-ts.local/interop/peer/gen/networkservice"
	"nsm-ts.local/interop/peer/internal/fdpass"
	"nsm-ts.local/interop/peer/internal/identity"
	"nsm-ts.local/interop/peer/internal/nsm"
	"nsm-ts.local/interop/peer/internal/policy"
)

// nsClient is an upstream-like NSC (cmd-nsc's chain without heal or a data plane): updatepath (segment 0, id
// <name>-0), the KERNEL mechanism preference with its namespace as file://, sendfd on unix sockets (inode:// plus
// the descriptor), the token as per-RPC credentials (aud = the server's ID from the handshake, already on the
// first call), and the default client policies on every answer (a refused answer is closed and fails).
type nsClient struct {
	name   string
	id     *identity.Identity
	url    string
	client ns.NetworkServiceClient
	fault  string
}

func runClient(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("client", flag.ExitOnError)
	var idf identityFlags
	idf.register(fs)
	connectTo := fs.String("connect-to", "", "nsmgr (or endpoint) URL")
	service := fs.String("service", "", "network service to request")
	name := fs.String("name", "nsc-interop", "client name (segment 0; connection id <name>-0)")
	mechanism := fs.String("mechanism", "kernel", "mechanism to prefer (kernel)")
	netnsFile := fs.String("netns-file", "/proc/self/ns/net", "the client's network namespace file (sent as a descriptor on unix)")
	ifname := fs.String("ifname", "", "interface name to ask for (default: upstream's generated name)")
	hold := fs.Duration("hold", 0, "keep the connection this long (refreshing as upstream) before closing it")
	refreshEvery := fs.Duration("refresh-every", 0, "refresh this often while holding (default: upstream's 20% of the shortest token lifetime)")
	labels := fs.String("labels", "", "connection labels k=v,...")
	timeout := fs.Duration("timeout", 15*time.Second, "request timeout (NSM_REQUEST_TIMEOUT)")
	noClose := fs.Bool("no-close", false, "exit without closing the connection")
	fault := fs.String("fault", "", "misbehave on purpose (tests): no-aud (tokens without aud), withhold-fds (inode:// URLs without their descriptors)")
	_ = fs.Parse(args)
	if *connectTo == "" || *service == "" {
		fmt.Fprintln(os.Stderr, "client: --connect-to and --service are required")
		return 2
	}
	if *mechanism != "kernel" {
		fmt.Fprintln(os.Stderr, "client: only --mechanism kernel is implemented")
		return 2
	}
	id, err := idf.load()
	if err != nil {
		emit(map[string]any{"event": "error", "code": "InvalidArgument", "message": err.Error()})
		return 2
	}
	cc, err := dial(*connectTo, id)
	if err != nil {
		emit(map[string]any{"event": "error", "code": "InvalidArgument", "message": err.Error()})
		return 2
	}
	defer cc.Close()
	c := &nsClient{name: *name, id: id, url: *connectTo, client: ns.NewNetworkServiceClient(cc), fault: *fault}

	params := map[string]string{nsm.InodeURLKey: "file://" + *netnsFile}
	if *ifname != "" {
		params[nsm.IfNameKey] = *ifname
	} else {
		params[nsm.IfNameKey] = ifName(*service)
	}
	req := &ns.NetworkServiceRequest{
		Connection:           &ns.Connection{Id: *name + "-0", NetworkService: *service, Labels: parseLabels(*labels)},
		MechanismPreferences: []*ns.Mechanism{{Cls: nsm.ClsLocal, Type: nsm.KernelType, Parameters: params}},
	}
	fail := func(stage string, err error) int {
		f := errorFields(err)
		f["event"] = "error"
		f["stage"] = stage
		emit(f)
		return 1
	}
	conn, err := c.request(ctx, req, *timeout)
	if err != nil {
		return fail("request", err)
	}
	emit(map[string]any{"event": "connected", "connection": conn})

	end := time.Now().Add(*hold)
	for time.Now().Before(end) {
		wait := nsm.RefreshDelay(conn, time.Now())
		if *refreshEvery > 0 {
			wait = *refreshEvery
		}
		if left := time.Until(end); wait > left {
			wait = left
		}
		select {
		case <-ctx.Done():
			end = time.Now()
			continue
		case <-time.After(wait):
		}
		if !time.Now().Before(end) {
			break
		}
		next := proto.Clone(req).(*ns.NetworkServiceRequest)
		next.Connection = cloneConn(conn)
		refreshed, err := c.request(ctx, next, *timeout)
		if err != nil {
			return fail("refresh", err)
		}
		conn = refreshed
		emit(map[string]any{"event": "refreshed", "connection": conn})
	}
	if *noClose {
		return 0
	}
	if err := c.close(conn, *timeout); err != nil {
		return fail("close", err)
	}
	emit(map[string]any{"event": "closed", "id": conn.GetId()})
	return 0
}

func parseLabels(s string) map[string]string {
	if s == "" {
		return nil
	}
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out
}

// call prepares a call's options: our token for the server, descriptors queued on the call's own connection.
func (c *nsClient) callOpts(fds *nsm.SendFDs, p *peer.Peer) []grpc.CallOption {
	creds := &identity.CallCredentials{ID: c.id, NoAud: c.fault == "no-aud", OnPeer: func(pr *peer.Peer) {
		if t, ok := fdpass.FromPeer(pr); ok && fds != nil && c.fault != "withhold-fds" {
			if err := fds.SendOn(t); err != nil {
				logf("sendfd: %v", err)
			}
		}
	}}
	return []grpc.CallOption{grpc.PerRPCCredentials(creds), grpc.Peer(p)}
}

func (c *nsClient) request(ctx context.Context, req *ns.NetworkServiceRequest, timeout time.Duration) (*ns.Connection, error) {
	req = proto.Clone(req).(*ns.NetworkServiceRequest)
	index, err := nsm.UpdatePath(req.Connection, c.name)
	if err != nil {
		return nil, err
	}
	// sendfd: upstream swaps file:// for inode:// whatever the transport; the descriptors go only where the
	// connection can carry them (unix).
	fds := &nsm.SendFDs{}
	for _, m := range nsm.AllMechanisms(req) {
		if err := fds.Swap(m.Parameters); err != nil {
			return nil, err
		}
	}
	callCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var p peer.Peer
	conn, err := c.client.Request(callCtx, req, c.callOpts(fds, &p)...)
	if err != nil {
		return nil, err
	}
	// authorize client: common + client/next_token_signed on the whole answer, the server's certificate.
	in := &policy.Input{Index: conn.GetPath().GetIndex(), Tokens: nsm.Tokens(conn.GetPath(), -1), PeerCert: identity.PeerCert(p.AuthInfo)}
	if err := policy.Check("networkservice", policy.Client, in); err != nil {
		r, _ := policy.AsRefusal(err)
		logf("%s: the answer is refused: policy failed: %s", c.name, r.Policy)
		if req.Connection.GetPath() != nil && len(req.Connection.Path.PathSegments) <= 1 { // not established before
			closeCtx, cancelClose := context.WithTimeout(context.WithoutCancel(ctx), timeout)
			_, _ = c.client.Close(closeCtx, conn, c.callOpts(nil, &peer.Peer{})...)
			cancelClose()
		}
		return nil, err
	}
	if conn.GetMechanism() != nil {
		fds.Restore(conn.Mechanism.Parameters)
	}
	nsm.Restore(conn, index)
	return conn, nil
}

func (c *nsClient) close(conn *ns.Connection, timeout time.Duration) error {
	conn = cloneConn(conn)
	if _, err := nsm.UpdatePath(conn, c.name); err != nil {
		return err
	}
	fds := &nsm.SendFDs{}
	if conn.GetMechanism() != nil {
		if err := fds.Swap(conn.Mechanism.Parameters); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var p peer.Peer
	_, err := c.client.Close(ctx, conn, c.callOpts(fds, &p)...)
	return err
}
