package nsm

import (
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	ns "nsm-ts.local/interop/peer/gen/networkservice"
)

// Monitor is a hop's MonitorConnections: INITIAL_STATE_TRANSFER of the matching connections on subscribe, then
// UPDATE on every answered Request and DELETE on Close (upstream's monitor element; authorization of monitor
// streams is off by default upstream, so anyone may watch). Connections are stored as the hop sees them: id and
// index of its own segment.
type Monitor struct {
	ns.UnimplementedMonitorConnectionServer

	mu    sync.Mutex
	conns map[string]*ns.Connection
	subs  map[chan *ns.ConnectionEvent]*ns.MonitorScopeSelector
}

// NewMonitor makes an empty store.
func NewMonitor() *Monitor {
	return &Monitor{conns: map[string]*ns.Connection{}, subs: map[chan *ns.ConnectionEvent]*ns.MonitorScopeSelector{}}
}

// Update stores conn (a clone) and tells the subscribers.
func (m *Monitor) Update(conn *ns.Connection) { m.publish(ns.ConnectionEventType_UPDATE, conn) }

// Delete forgets conn and tells the subscribers (state DOWN).
func (m *Monitor) Delete(conn *ns.Connection) { m.publish(ns.ConnectionEventType_DELETE, conn) }

func (m *Monitor) publish(typ ns.ConnectionEventType, conn *ns.Connection) {
	c := proto.Clone(conn).(*ns.Connection)
	m.mu.Lock()
	defer m.mu.Unlock()
	if typ == ns.ConnectionEventType_DELETE {
		c.State = ns.State_DOWN
		delete(m.conns, c.Id)
	} else {
		m.conns[c.Id] = c
	}
	for ch, sel := range m.subs {
		if Matches(sel, c) {
			select {
			case ch <- &ns.ConnectionEvent{Type: typ, Connections: map[string]*ns.Connection{c.Id: c}}:
			default: // a subscriber that does not read loses events rather than blocking a Request
			}
		}
	}
}

// MonitorConnections implements the service.
func (m *Monitor) MonitorConnections(sel *ns.MonitorScopeSelector, stream grpc.ServerStreamingServer[ns.ConnectionEvent]) error {
	ch := make(chan *ns.ConnectionEvent, 64)
	m.mu.Lock()
	initial := &ns.ConnectionEvent{Type: ns.ConnectionEventType_INITIAL_STATE_TRANSFER, Connections: map[string]*ns.Connection{}}
	for id, c := range m.conns {
		if Matches(sel, c) {
			initial.Connections[id] = proto.Clone(c).(*ns.Connection)
		}
	}
	m.subs[ch] = sel
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.subs, ch)
		m.mu.Unlock()
	}()
	if err := stream.Send(initial); err != nil {
		return err
	}
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case ev := <-ch:
			if err := stream.Send(ev); err != nil {
				return err
			}
		}
	}
}

// Matches is upstream's selector test: services empty or containing the connection's; selector segments empty
// or matching a contiguous run of the connection's segments, comparing only the non-empty fields.
func Matches(sel *ns.MonitorScopeSelector, c *ns.Connection) bool {
	if svcs := sel.GetNetworkServices(); len(svcs) > 0 {
		found := false
		for _, s := range svcs {
			found = found || s == c.GetNetworkService()
		}
		if !found {
			return false
		}
	}
	want := sel.GetPathSegments()
	if len(want) == 0 {
		return true
	}
	segs := c.GetPath().GetPathSegments()
	for start := 0; start+len(want) <= len(segs); start++ {
		ok := true
		for i, w := range want {
			s := segs[start+i]
			if (w.Name != "" && w.Name != s.Name) || (w.Id != "" && w.Id != s.Id) || (w.Token != "" && w.Token != s.Token) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}
