// Package nsm holds the per-hop NSM logic the peer's components share, written after upstream sdk's chain
// elements: updatepath (networkservice and registry), updatetoken, the token per path segment, mechanism
// parameters and a MonitorConnections store.
package nsm

import (
	"crypto/rand"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	ns "nsm-ts.local/interop/peer/gen/networkservice"
)

// NewID is a random UUID (v4), as upstream's uuid.New().
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// UpdatePath moves conn's path to the segment of hop `name`, as upstream updatepath (sdk
// pkg/networkservice/common/updatepath/common.go) does for clients and servers:
//
//   - no segments: index 0, a segment {name, conn.Id (a new UUID if empty)};
//   - the current segment already is `name`'s: take its id (a client refreshing, or Close);
//   - else the current segment's id must equal conn.Id and index+1 must not pass the end; the next segment is
//     renamed with a new UUID if it belongs to someone else, appended if missing, reused if it is ours; index+1.
//
// It returns the index to restore on the way back (the caller's).
func UpdatePath(conn *ns.Connection, name string) (uint32, error) {
	if conn.Path == nil {
		conn.Path = &ns.Path{}
	}
	p := conn.Path
	if len(p.PathSegments) == 0 {
		p.Index = 0
		if conn.Id == "" {
			conn.Id = NewID()
		}
		p.PathSegments = append(p.PathSegments, &ns.PathSegment{Name: name, Id: conn.Id})
		return 0, nil
	}
	if int(p.Index) < len(p.PathSegments) && p.PathSegments[p.Index].Name == name {
		conn.Id = p.PathSegments[p.Index].Id
		return p.Index, nil
	}
	next := int(p.Index) + 1
	if next > len(p.PathSegments) {
		return 0, fmt.Errorf("Path.Index+1==%d should be less or equal len(Path.PathSegments)==%d", next, len(p.PathSegments))
	}
	if p.PathSegments[p.Index].Id != conn.Id {
		return 0, fmt.Errorf("Current PathSegment.Id==%v should be equal Connection.Id==%v", p.PathSegments[p.Index].Id, conn.Id)
	}
	if next < len(p.PathSegments) && p.PathSegments[next].Name != name {
		p.PathSegments[next].Name = name
		p.PathSegments[next].Id = NewID()
	}
	p.Index++
	if int(p.Index) >= len(p.PathSegments) {
		conn.Id = NewID()
		p.PathSegments = append(p.PathSegments, &ns.PathSegment{Name: name, Id: conn.Id})
	} else {
		conn.Id = p.PathSegments[p.Index].Id
	}
	return p.Index - 1, nil
}

// Restore puts the caller's view back on a response: id of segment `index`, that index (updatepath on return).
func Restore(conn *ns.Connection, index uint32) {
	if conn.GetPath() != nil && int(index) < len(conn.Path.PathSegments) {
		conn.Id = conn.Path.PathSegments[index].Id
		conn.Path.Index = index
	}
}

// UpdateTokenServer is upstream's updatetoken server: the previous segment gets the token the caller presented
// in its metadata (if any), the current segment a token of ours for the caller.
func UpdateTokenServer(conn *ns.Connection, callerToken string, callerExpires time.Time, own string, ownExpires time.Time) error {
	p := conn.GetPath()
	if p == nil || int(p.Index) >= len(p.PathSegments) {
		return fmt.Errorf("NetworkServiceRequest.Connection.Path.Index(%d) >= len(NetworkServiceRequest.Connection.Path.PathSegments)(%d)",
			p.GetIndex(), len(p.GetPathSegments()))
	}
	if p.Index > 0 && callerToken != "" {
		prev := p.PathSegments[p.Index-1]
		prev.Token = callerToken
		prev.Expires = timestamppb.New(callerExpires)
	}
	cur := p.PathSegments[p.Index]
	cur.Token = own
	cur.Expires = timestamppb.New(ownExpires)
	return nil
}

// Tokens lists the tokens of segments [0, upTo) (all when upTo < 0).
func Tokens(p *ns.Path, upTo int) []string {
	segs := p.GetPathSegments()
	if upTo >= 0 && upTo < len(segs) {
		segs = segs[:upTo]
	}
	out := make([]string, len(segs))
	for i, s := range segs {
		out[i] = s.GetToken()
	}
	return out
}

// RefreshDelay is when upstream's refresh client re-requests: the shortest remaining segment lifetime times
// 1/3 with at most one segment, else 0.2 + 0.2*index/len(segments).
func RefreshDelay(conn *ns.Connection, now time.Time) time.Duration {
	segs := conn.GetPath().GetPathSegments()
	var shortest time.Duration = -1
	for _, s := range segs {
		if s.GetExpires() == nil {
			continue
		}
		d := s.GetExpires().AsTime().Sub(now)
		if shortest < 0 || d < shortest {
			shortest = d
		}
	}
	if shortest < 0 {
		return time.Minute
	}
	scale := 1.0 / 3.0
	if len(segs) > 1 {
		scale = 0.2 + 0.2*float64(conn.GetPath().GetIndex())/float64(len(segs))
	}
	return time.Duration(float64(shortest) * scale)
}
