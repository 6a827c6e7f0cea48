package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	reg "nsm-ts.local/interop/peer/gen/registry"
	"nsm-ts.local/interop/peer/internal/identity"
	"nsm-ts.local/interop/peer/internal/nsm"
	"nsm-ts.local/interop/peer/internal/policy"
)

// The registry suite runs upstream-client-shaped cases against a registry and says, per case, whether the
// registry answered as upstream's (sdk registry chains: grpcmetadata → updatepath → authorize → begin → … →
// setpayload / setregistrationtime → expire → memory) would. Expected answers, from upstream's source:
//
//   - updatepath (pkg/registry/common/updatepath/common.go): an empty path becomes [caller, registry] with the
//     caller's metadata token and the registry's own, index 1; path_ids[index-1] = caller, [index] = registry;
//     the `path` header answers index 0 (the caller's);
//   - setpayload (pkg/registry/common/setpayload): an NS without payload is stored as "IP";
//   - setregistrationtime: initial_registration_time set once and kept on refreshes;
//   - expire (pkg/registry/common/expire/nse_server.go): expiration_time = the earliest of the registry's token
//     expiry, the caller's token expiry and now + the default expiration (1 min); an earlier client value is
//     kept; at expiry the NSE is unregistered (a deleted event);
//   - memory (pkg/registry/common/memory): Find without watch streams the matches and ends; with watch, the
//     current matches first, then every matching Register (deleted=false) and Unregister/expiry (deleted=true);
//     Unregister of an unknown name answers Empty; an NSE needs no NetworkService;
//   - authorize with the registry server policies: only the first registrant (path_ids[0]) may re-register or
//     unregister a name.
type suite struct {
	rc      *registryClient
	other   *registryClient
	me      string
	run     string
	failed  int
	timeout time.Duration
}

func runRegistrySuite(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("registry-suite", flag.ExitOnError)
	var idf, other identityFlags
	idf.register(fs)
	registry := fs.String("registry", "", "registry URL (tcp://host:port or unix:///path)")
	fs.StringVar(&other.cert, "other-cert-file", "", "a second identity's SVID, for the ownership case (optional)")
	fs.StringVar(&other.key, "other-key-file", "", "its key")
	fs.StringVar(&other.ca, "other-ca-file", "", "its bundle")
	only := fs.String("only", "", "comma-separated case names to run (default all)")
	_ = fs.Parse(args)
	if *registry == "" {
		fmt.Fprintln(os.Stderr, "registry-suite: --registry is required")
		return 2
	}
	id, err := idf.load()
	if err != nil {
		emit(map[string]any{"event": "error", "code": "InvalidArgument", "message": err.Error()})
		return 2
	}
	rc, err := newRegistryClient(id, *registry)
	if err != nil {
		emit(map[string]any{"event": "error", "code": "InvalidArgument", "message": err.Error()})
		return 2
	}
	defer rc.Close()
	s := &suite{rc: rc, me: id.ID(), run: nsm.NewID()[:8], timeout: 10 * time.Second}
	if other.cert != "" {
		other.maxTokenLife = identity.DefaultMaxTokenLifetime
		oid, err := other.load()
		if err != nil {
			emit(map[string]any{"event": "error", "code": "InvalidArgument", "message": err.Error()})
			return 2
		}
		if s.other, err = newRegistryClient(oid, *registry); err != nil {
			emit(map[string]any{"event": "error", "code": "InvalidArgument", "message": err.Error()})
			return 2
		}
		defer s.other.Close()
	}
	cases := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"ns-register", s.nsRegister},
		{"nse-register", s.nseRegister},
		{"nse-refresh", s.nseRefresh},
		{"find-ns-by-name", s.findNSByName},
		{"find-nse-by-name", s.findNSEByName},
		{"find-nse-by-service", s.findNSEByService},
		{"find-nse-watch", s.findNSEWatch},
		{"find-ns-watch", s.findNSWatch},
		{"unregister-nse", s.unregisterNSE},
		{"unregister-unknown", s.unregisterUnknown},
		{"nse-without-ns", s.nseWithoutNS},
		{"nse-expiration-capped", s.nseExpirationCapped},
		{"nse-expiry", s.nseExpiry},
		{"ownership", s.ownership},
	}
	want := map[string]bool{}
	for _, n := range strings.Split(*only, ",") {
		if n != "" {
			want[n] = true
		}
	}
	for _, c := range cases {
		if len(want) > 0 && !want[c.name] {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := c.fn(cctx)
		cancel()
		var skip *skipped
		switch {
		case errors.As(err, &skip):
			emit(map[string]any{"case": c.name, "ok": true, "skipped": true, "detail": skip.why})
		case err != nil:
			s.failed++
			emit(map[string]any{"case": c.name, "ok": false, "detail": err.Error()})
		default:
			emit(map[string]any{"case": c.name, "ok": true, "detail": ""})
		}
	}
	if s.failed > 0 {
		return 1
	}
	return 0
}

type skipped struct{ why string }

func (s *skipped) Error() string { return s.why }

// names of this run's records.
func (s *suite) ns() string          { return "interop-ns-" + s.run }
func (s *suite) nse(k string) string { return "interop-nse-" + k + "-" + s.run }

func (s *suite) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// checkPath compares a first registration's answer with upstream's updatepath for an empty path.
func (s *suite) checkPath(call *regCall, pathIDs []string) []string {
	var bad []string
	registryID := identity.IDOf(call.PeerCert)
	if want := []string{s.me, registryID}; !slices.Equal(pathIDs, want) {
		bad = append(bad, fmt.Sprintf("path_ids %q, want %q (upstream updatepath for an empty path: [caller, registry])", pathIDs, want))
	}
	h := call.Header
	switch {
	case h == nil:
		bad = append(bad, "no `path` response header (upstream grpcmetadata server sends the updated path)")
	case h.Index != 0 || len(h.PathSegments) != 2:
		bad = append(bad, fmt.Sprintf("path header index %d with %d segments, want index 0 with 2 (caller, registry)", h.Index, len(h.PathSegments)))
	default:
		if h.PathSegments[0].Token != call.Token {
			bad = append(bad, "path segment 0 is not the token we sent")
		}
		t := h.PathSegments[1].Token
		if sub := policy.Sub(t); sub != registryID {
			bad = append(bad, fmt.Sprintf("path segment 1 token sub %q, want the registry's %q", sub, registryID))
		}
		if aud := policy.Aud(t); !slices.Equal(aud, []string{s.me}) {
			bad = append(bad, fmt.Sprintf("path segment 1 token aud %q, want [%q]", aud, s.me))
		}
	}
	return bad
}

func joinBad(bad []string, err error) error {
	if err != nil {
		bad = append(bad, describe(err))
	}
	if len(bad) == 0 {
		return nil
	}
	return errors.New(strings.Join(bad, "; "))
}

func describe(err error) string {
	if r, ok := policy.AsRefusal(err); ok {
		return fmt.Sprintf("the answer fails the default registry client policy %s", r.Policy)
	}
	st := status.Convert(err)
	return fmt.Sprintf("%s: %s", st.Code(), st.Message())
}

func (s *suite) nsRegister(ctx context.Context) error {
	cctx, cancel := s.call(ctx)
	defer cancel()
	resp, call, err := s.rc.RegisterNS(cctx, &reg.NetworkService{Name: s.ns()}, nil)
	if resp == nil {
		return joinBad(nil, err)
	}
	var bad []string
	if resp.Payload != "IP" {
		bad = append(bad, fmt.Sprintf("payload %q, want \"IP\" (upstream setpayload default for an empty payload)", resp.Payload))
	}
	bad = append(bad, s.checkPath(call, resp.PathIds)...)
	return joinBad(bad, err)
}

func (s *suite) registerNSE(ctx context.Context, name string, services []string, exp *timestamppb.Timestamp) (*reg.NetworkServiceEndpoint, *regCall, error) {
	e := &reg.NetworkServiceEndpoint{
		Name:                 name,
		NetworkServiceNames:  services,
		NetworkServiceLabels: map[string]*reg.NetworkServiceLabels{},
		Url:                  "tcp://127.0.0.1:5999",
		ExpirationTime:       exp,
	}
	for _, svc := range services {
		e.NetworkServiceLabels[svc] = &reg.NetworkServiceLabels{Labels: map[string]string{"app": "interop"}}
	}
	return s.rc.RegisterNSE(ctx, e, nil)
}

var firstNSE struct {
	resp *reg.NetworkServiceEndpoint
	path *nsm.RegistryPath
}

func (s *suite) nseRegister(ctx context.Context) error {
	cctx, cancel := s.call(ctx)
	defer cancel()
	before := time.Now()
	resp, call, err := s.registerNSE(cctx, s.nse("a"), []string{s.ns()}, nil)
	if resp == nil {
		return joinBad(nil, err)
	}
	firstNSE.resp, firstNSE.path = resp, call.Header
	var bad []string
	if resp.Name != s.nse("a") || resp.Url != "tcp://127.0.0.1:5999" || !slices.Equal(resp.NetworkServiceNames, []string{s.ns()}) {
		bad = append(bad, fmt.Sprintf("answer changed the registration: %v", resp))
	}
	if resp.ExpirationTime == nil {
		bad = append(bad, "no expiration_time (upstream expire sets min(token expiries, now + 1m))")
	} else if d := resp.ExpirationTime.AsTime().Sub(before); d <= 0 || d > 62*time.Second {
		bad = append(bad, fmt.Sprintf("expiration_time %v from now, want within the default expiration (1m)", d.Round(time.Millisecond)))
	}
	if resp.InitialRegistrationTime == nil {
		bad = append(bad, "no initial_registration_time (upstream setregistrationtime)")
	}
	bad = append(bad, s.checkPath(call, resp.PathIds)...)
	return joinBad(bad, err)
}

func (s *suite) nseRefresh(ctx context.Context) error {
	if firstNSE.resp == nil {
		return errors.New("nse-register did not succeed")
	}
	time.Sleep(1100 * time.Millisecond) // a later second for expiration_time
	cctx, cancel := s.call(ctx)
	defer cancel()
	next := cloneNSE(firstNSE.resp)
	next.ExpirationTime = nil // upstream begin's merge clears it
	resp, call, err := s.rc.RegisterNSE(cctx, next, firstNSE.path)
	if resp == nil {
		return joinBad(nil, err)
	}
	var bad []string
	if !proto_equal_time(resp.InitialRegistrationTime, firstNSE.resp.InitialRegistrationTime) {
		bad = append(bad, fmt.Sprintf("initial_registration_time changed on refresh: %v → %v", firstNSE.resp.InitialRegistrationTime.AsTime(), resp.InitialRegistrationTime.AsTime()))
	}
	if resp.ExpirationTime == nil || firstNSE.resp.ExpirationTime == nil || !resp.ExpirationTime.AsTime().After(firstNSE.resp.ExpirationTime.AsTime()) {
		bad = append(bad, "expiration_time not moved later by the refresh")
	}
	if !slices.Equal(resp.PathIds, firstNSE.resp.PathIds) {
		bad = append(bad, fmt.Sprintf("path_ids changed on refresh: %q → %q", firstNSE.resp.PathIds, resp.PathIds))
	}
	firstNSE.resp, firstNSE.path = resp, call.Header
	if h := call.Header; h == nil || h.Index != 0 || len(h.PathSegments) != 2 {
		bad = append(bad, fmt.Sprintf("path header %+v, want index 0 with 2 segments (upstream refresh replaces both tokens)", h))
	}
	return joinBad(bad, err)
}

func proto_equal_time(a, b *timestamppb.Timestamp) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.AsTime().Equal(b.AsTime())
}

// collect reads a non-watch Find to its end.
func collect[T any](stream grpc.ServerStreamingClient[T]) ([]*T, error) {
	var out []*T
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, m)
	}
}

func (s *suite) findNSByName(ctx context.Context) error {
	cctx, cancel := s.call(ctx)
	defer cancel()
	st, err := s.rc.FindNS(cctx, &reg.NetworkServiceQuery{NetworkService: &reg.NetworkService{Name: s.ns()}})
	if err != nil {
		return joinBad(nil, err)
	}
	got, err := collect(st)
	if err != nil {
		return joinBad([]string{"the stream did not end cleanly (a non-watch Find ends after the matches)"}, err)
	}
	if len(got) != 1 || got[0].GetNetworkService().GetName() != s.ns() || got[0].Deleted {
		return fmt.Errorf("got %d answers %v, want exactly %s", len(got), got, s.ns())
	}
	return nil
}

func (s *suite) findNSEByName(ctx context.Context) error {
	cctx, cancel := s.call(ctx)
	defer cancel()
	st, err := s.rc.FindNSE(cctx, &reg.NetworkServiceEndpointQuery{NetworkServiceEndpoint: &reg.NetworkServiceEndpoint{Name: s.nse("a")}})
	if err != nil {
		return joinBad(nil, err)
	}
	got, err := collect(st)
	if err != nil {
		return joinBad([]string{"the stream did not end cleanly"}, err)
	}
	if len(got) != 1 || got[0].GetNetworkServiceEndpoint().GetName() != s.nse("a") || got[0].Deleted {
		return fmt.Errorf("got %d answers, want exactly %s", len(got), s.nse("a"))
	}
	return nil
}

func (s *suite) findNSEByService(ctx context.Context) error {
	cctx, cancel := s.call(ctx)
	defer cancel()
	if _, _, err := s.registerNSE(cctx, s.nse("b"), []string{"interop-other-" + s.run}, nil); err != nil {
		return joinBad([]string{"registering a second NSE of another service"}, err)
	}
	st, err := s.rc.FindNSE(cctx, &reg.NetworkServiceEndpointQuery{NetworkServiceEndpoint: &reg.NetworkServiceEndpoint{NetworkServiceNames: []string{s.ns()}}})
	if err != nil {
		return joinBad(nil, err)
	}
	got, err := collect(st)
	if err != nil {
		return joinBad(nil, err)
	}
	var names []string
	for _, r := range got {
		names = append(names, r.GetNetworkServiceEndpoint().GetName())
	}
	if !slices.Equal(names, []string{s.nse("a")}) {
		return fmt.Errorf("got %q, want only %q", names, s.nse("a"))
	}
	return nil
}

// watcher reads a watch stream in the background.
type watcher[T any] struct {
	ch  chan *T
	err chan error
}

func watch[T any](st grpc.ServerStreamingClient[T]) *watcher[T] {
	w := &watcher[T]{ch: make(chan *T, 64), err: make(chan error, 1)}
	go func() {
		for {
			m, err := st.Recv()
			if err != nil {
				w.err <- err
				return
			}
			w.ch <- m
		}
	}()
	return w
}

func (w *watcher[T]) next(d time.Duration) (*T, error) {
	select {
	case m := <-w.ch:
		return m, nil
	case err := <-w.err:
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the watch stream ended (a watch must stay open)")
		}
		return nil, err
	case <-time.After(d):
		return nil, nil
	}
}

func (s *suite) findNSEWatch(ctx context.Context) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := s.rc.FindNSE(wctx, &reg.NetworkServiceEndpointQuery{Watch: true, NetworkServiceEndpoint: &reg.NetworkServiceEndpoint{NetworkServiceNames: []string{s.ns()}}})
	if err != nil {
		return joinBad(nil, err)
	}
	w := watch(st)
	expect := func(what, name string, deleted bool) error {
		m, err := w.next(5 * time.Second)
		if err != nil {
			return fmt.Errorf("%s: %v", what, err)
		}
		if m == nil {
			return fmt.Errorf("%s: nothing within 5s (want %s deleted=%v)", what, name, deleted)
		}
		if m.GetNetworkServiceEndpoint().GetName() != name || m.Deleted != deleted {
			return fmt.Errorf("%s: got %s deleted=%v, want %s deleted=%v", what, m.GetNetworkServiceEndpoint().GetName(), m.Deleted, name, deleted)
		}
		return nil
	}
	if err := expect("first (the current matches)", s.nse("a"), false); err != nil {
		return err
	}
	cctx, ccancel := s.call(ctx)
	defer ccancel()
	resp, call, err := s.registerNSE(cctx, s.nse("w"), []string{s.ns()}, nil)
	if err != nil {
		return joinBad([]string{"registering a watched NSE"}, err)
	}
	if err := expect("after Register", s.nse("w"), false); err != nil {
		return err
	}
	next := cloneNSE(resp)
	next.ExpirationTime = nil
	if _, call, err = s.rc.RegisterNSE(cctx, next, call.Header); err != nil {
		return joinBad([]string{"refreshing a watched NSE"}, err)
	}
	if err := expect("after a refresh", s.nse("w"), false); err != nil {
		return err
	}
	// A record of another service is not sent.
	if _, _, err := s.registerNSE(cctx, s.nse("b"), []string{"interop-other-" + s.run}, nil); err != nil {
		return joinBad([]string{"re-registering the NSE of another service"}, err)
	}
	if _, _, err := s.rc.UnregisterNSE(cctx, next, call.Header, true); err != nil {
		return joinBad([]string{"unregistering the watched NSE"}, err)
	}
	if err := expect("after Unregister (the other service's record must not come first)", s.nse("w"), true); err != nil {
		return err
	}
	return nil
}

func (s *suite) findNSWatch(ctx context.Context) error {
	name := "interop-ns-w-" + s.run
	cctx, ccancel := s.call(ctx)
	defer ccancel()
	resp, call, err := s.rc.RegisterNS(cctx, &reg.NetworkService{Name: name, Payload: "ETHERNET"}, nil)
	if err != nil {
		return joinBad([]string{"registering the NS"}, err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := s.rc.FindNS(wctx, &reg.NetworkServiceQuery{Watch: true, NetworkService: &reg.NetworkService{Name: name}})
	if err != nil {
		return joinBad(nil, err)
	}
	w := watch(st)
	expect := func(what string, deleted bool, payload string) error {
		m, err := w.next(5 * time.Second)
		if err != nil {
			return fmt.Errorf("%s: %v", what, err)
		}
		if m == nil {
			return fmt.Errorf("%s: nothing within 5s", what)
		}
		if m.GetNetworkService().GetName() != name || m.Deleted != deleted || m.GetNetworkService().GetPayload() != payload {
			return fmt.Errorf("%s: got %v deleted=%v, want %s payload %s deleted=%v", what, m.GetNetworkService(), m.Deleted, name, payload, deleted)
		}
		return nil
	}
	if err := expect("first (the current match)", false, "ETHERNET"); err != nil {
		return err
	}
	upd := &reg.NetworkService{Name: name, Payload: "IP"}
	if _, call, err = s.rc.RegisterNS(cctx, upd, call.Header); err != nil {
		return joinBad([]string{"re-registering the NS"}, err)
	}
	if err := expect("after a re-Register", false, "IP"); err != nil {
		return err
	}
	_ = resp
	if _, _, err := s.rc.UnregisterNS(cctx, upd, call.Header, true); err != nil {
		return joinBad([]string{"unregistering the NS"}, err)
	}
	return expect("after Unregister", true, "IP")
}

func (s *suite) unregisterNSE(ctx context.Context) error {
	if firstNSE.resp == nil {
		return errors.New("nse-register did not succeed")
	}
	cctx, cancel := s.call(ctx)
	defer cancel()
	_, call, err := s.rc.UnregisterNSE(cctx, firstNSE.resp, firstNSE.path, true)
	var bad []string
	if err == nil && call.Header != nil && (call.Header.Index != 0 || len(call.Header.PathSegments) != 2) {
		bad = append(bad, fmt.Sprintf("path header %+v, want index 0 with 2 segments", call.Header))
	}
	if err != nil {
		return joinBad(bad, err)
	}
	st, err := s.rc.FindNSE(cctx, &reg.NetworkServiceEndpointQuery{NetworkServiceEndpoint: &reg.NetworkServiceEndpoint{Name: s.nse("a")}})
	if err != nil {
		return joinBad(bad, err)
	}
	got, err := collect(st)
	if err != nil || len(got) != 0 {
		bad = append(bad, fmt.Sprintf("Find after Unregister found %d records (%v)", len(got), err))
	}
	return joinBad(bad, nil)
}

func (s *suite) unregisterUnknown(ctx context.Context) error {
	cctx, cancel := s.call(ctx)
	defer cancel()
	var bad []string
	if _, _, err := s.rc.UnregisterNSE(cctx, &reg.NetworkServiceEndpoint{Name: "interop-nosuch-nse-" + s.run}, nil, true); err != nil {
		bad = append(bad, "NSE: "+describe(err)+" (upstream answers Empty for an unknown name)")
	}
	if _, _, err := s.rc.UnregisterNS(cctx, &reg.NetworkService{Name: "interop-nosuch-ns-" + s.run}, nil, true); err != nil {
		bad = append(bad, "NS: "+describe(err)+" (upstream answers Empty for an unknown name)")
	}
	return joinBad(bad, nil)
}

func (s *suite) nseWithoutNS(ctx context.Context) error {
	cctx, cancel := s.call(ctx)
	defer cancel()
	name := s.nse("lone")
	resp, call, err := s.registerNSE(cctx, name, []string{"interop-never-registered-" + s.run}, nil)
	if err != nil {
		return joinBad([]string{"upstream's registry stores an NSE whose NetworkService does not exist"}, err)
	}
	_, _, _ = s.rc.UnregisterNSE(cctx, resp, call.Header, false)
	return nil
}

func (s *suite) nseExpirationCapped(ctx context.Context) error {
	cctx, cancel := s.call(ctx)
	defer cancel()
	before := time.Now()
	resp, call, err := s.registerNSE(cctx, s.nse("late"), []string{s.ns()}, timestamppb.New(before.Add(time.Hour)))
	if resp == nil {
		return joinBad(nil, err)
	}
	defer func() { _, _, _ = s.rc.UnregisterNSE(cctx, resp, call.Header, false) }()
	if d := resp.GetExpirationTime().AsTime().Sub(before); d > 62*time.Second {
		return joinBad([]string{fmt.Sprintf("expiration_time %v ahead kept, want it capped at the default expiration (1m): a later client value is overridden", d.Round(time.Second))}, err)
	}
	return joinBad(nil, err)
}

func (s *suite) nseExpiry(ctx context.Context) error {
	name := s.nse("exp")
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := s.rc.FindNSE(wctx, &reg.NetworkServiceEndpointQuery{Watch: true, NetworkServiceEndpoint: &reg.NetworkServiceEndpoint{Name: name}})
	if err != nil {
		return joinBad(nil, err)
	}
	w := watch(st)
	// No deadline on this Register: upstream's expire fires at expiration_time minus the Register's remaining
	// deadline.
	want := time.Now().Add(3 * time.Second).Truncate(time.Second).Add(time.Second)
	start := time.Now()
	resp, _, err := s.registerNSE(context.WithoutCancel(ctx), name, []string{s.ns()}, timestamppb.New(want))
	if resp == nil {
		return joinBad(nil, err)
	}
	var bad []string
	if err != nil {
		bad = append(bad, describe(err))
	}
	if got := resp.GetExpirationTime(); got == nil || got.AsTime().Unix() != want.Unix() {
		bad = append(bad, fmt.Sprintf("expiration_time %v, want the earlier client value %v kept", got.AsTime(), want))
	}
	for {
		m, err := w.next(time.Until(want) + 5*time.Second)
		if err != nil {
			return joinBad(append(bad, err.Error()), nil)
		}
		if m == nil {
			return joinBad(append(bad, fmt.Sprintf("no deleted event within 5s after expiration_time (%v after Register)", time.Since(start).Round(time.Millisecond))), nil)
		}
		if m.GetNetworkServiceEndpoint().GetName() != name {
			bad = append(bad, "a record of another name on a watch by name")
			continue
		}
		if !m.Deleted {
			continue // the registration itself
		}
		if early := time.Until(want); early > 1500*time.Millisecond {
			bad = append(bad, fmt.Sprintf("deleted %v before expiration_time", early.Round(time.Millisecond)))
		}
		break
	}
	cctx, ccancel := s.call(ctx)
	defer ccancel()
	fst, err := s.rc.FindNSE(cctx, &reg.NetworkServiceEndpointQuery{NetworkServiceEndpoint: &reg.NetworkServiceEndpoint{Name: name}})
	if err == nil {
		if got, _ := collect(fst); len(got) != 0 {
			bad = append(bad, "Find still returns the expired NSE")
		}
	}
	return joinBad(bad, nil)
}

func (s *suite) ownership(ctx context.Context) error {
	if s.other == nil {
		return &skipped{"no --other-cert-file given"}
	}
	cctx, cancel := s.call(ctx)
	defer cancel()
	name := s.nse("owned")
	resp, call, err := s.registerNSE(cctx, name, []string{s.ns()}, nil)
	if err != nil {
		return joinBad([]string{"registering as the owner"}, err)
	}
	defer func() { _, _, _ = s.rc.UnregisterNSE(cctx, resp, call.Header, false) }()
	var bad []string
	hijack := &reg.NetworkServiceEndpoint{Name: name, NetworkServiceNames: []string{s.ns()}, Url: "tcp://127.0.0.1:6666"}
	if r, _, err := s.other.RegisterNSE(cctx, hijack, nil); status.Code(err) != codes.PermissionDenied {
		bad = append(bad, fmt.Sprintf("another identity re-registered the name: %v (answer %v), want PermissionDenied (registry/client_allowed)", err, r))
	}
	if _, _, err := s.other.UnregisterNSE(cctx, hijack, nil, false); status.Code(err) != codes.PermissionDenied {
		bad = append(bad, fmt.Sprintf("another identity's Unregister answered %v, want PermissionDenied", err))
	}
	st, err := s.rc.FindNSE(cctx, &reg.NetworkServiceEndpointQuery{NetworkServiceEndpoint: &reg.NetworkServiceEndpoint{Name: name}})
	if err == nil {
		got, _ := collect(st)
		if len(got) != 1 || got[0].GetNetworkServiceEndpoint().GetUrl() != "tcp://127.0.0.1:5999" {
			bad = append(bad, "the owner's record did not survive")
		}
	}
	// NetworkService names have owners too (the NS authorize server applies the same policies).
	if r, _, err := s.other.RegisterNS(cctx, &reg.NetworkService{Name: s.ns(), Payload: "ETHERNET"}, nil); status.Code(err) != codes.PermissionDenied {
		bad = append(bad, fmt.Sprintf("another identity re-registered NetworkService %s: %v (answer %v), want PermissionDenied", s.ns(), err, r))
	}
	if _, _, err := s.other.UnregisterNS(cctx, &reg.NetworkService{Name: s.ns()}, nil, false); status.Code(err) != codes.PermissionDenied {
		bad = append(bad, fmt.Sprintf("another identity's Unregister of NetworkService %s answered %v, want PermissionDenied", s.ns(), err))
	}
	return joinBad(bad, nil)
}
