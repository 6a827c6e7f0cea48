package nsm

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	ns "nsm-ts.local/interop/peer/gen/networkservice"
)

func names(c *ns.Connection) []string {
	var out []string
	for _, s := range c.GetPath().GetPathSegments() {
		out = append(out, s.Name)
	}
	return out
}

func TestUpdatePathAlongAChainAndBack(t *testing.T) {
	c := &ns.Connection{Id: "nsc-0"}
	// The client makes segment 0 with its own id.
	if i, err := UpdatePath(c, "nsc"); err != nil || i != 0 || c.Id != "nsc-0" || c.Path.Index != 0 {
		t.Fatalf("client: %v %v %+v", i, err, c.Path)
	}
	// Each server appends its segment with a new id and moves the index.
	for hop, name := range []string{"nsmgr", "fwd", "nse"} {
		prev, err := UpdatePath(c, name)
		if err != nil || prev != uint32(hop) || c.Path.Index != uint32(hop+1) {
			t.Fatalf("%s: prev %d err %v index %d", name, prev, err, c.Path.Index)
		}
		if c.Id != c.Path.PathSegments[hop+1].Id || c.Id == "" {
			t.Fatalf("%s: id %q", name, c.Id)
		}
	}
	if got := names(c); len(got) != 4 || got[3] != "nse" {
		t.Fatalf("segments %v", got)
	}
	nseID := c.Id
	Restore(c, 0)
	if c.Id != "nsc-0" || c.Path.Index != 0 {
		t.Fatalf("restore: %q %d", c.Id, c.Path.Index)
	}
	// A refresh: the client's own segment is current; servers find theirs and keep their ids.
	if _, err := UpdatePath(c, "nsc"); err != nil || c.Id != "nsc-0" {
		t.Fatal(err)
	}
	for _, name := range []string{"nsmgr", "fwd", "nse"} {
		if _, err := UpdatePath(c, name); err != nil {
			t.Fatal(err)
		}
	}
	if c.Id != nseID || len(c.Path.PathSegments) != 4 {
		t.Fatalf("refresh changed ids: %q != %q (%d segments)", c.Id, nseID, len(c.Path.PathSegments))
	}
}

func TestUpdatePathRenamesAnotherHopsSegment(t *testing.T) {
	c := &ns.Connection{Id: "a", Path: &ns.Path{Index: 0, PathSegments: []*ns.PathSegment{{Name: "nsc", Id: "a"}, {Name: "old-nsmgr", Id: "b"}}}}
	if _, err := UpdatePath(c, "new-nsmgr"); err != nil {
		t.Fatal(err)
	}
	s := c.Path.PathSegments[1]
	if s.Name != "new-nsmgr" || s.Id == "b" || c.Id != s.Id {
		t.Fatalf("segment %+v, conn id %q", s, c.Id)
	}
}

func TestUpdatePathRefusesAnIdNotMatchingTheSegment(t *testing.T) {
	c := &ns.Connection{Id: "forged", Path: &ns.Path{Index: 0, PathSegments: []*ns.PathSegment{{Name: "nsc", Id: "a"}}}}
	if _, err := UpdatePath(c, "nsmgr"); err == nil {
		t.Fatal("accepted connection.id != path_segments[index].id")
	}
	c = &ns.Connection{Id: "a", Path: &ns.Path{Index: 3, PathSegments: []*ns.PathSegment{{Name: "nsc", Id: "a"}}}}
	if _, err := UpdatePath(c, "nsmgr"); err == nil {
		t.Fatal("accepted an index past the end")
	}
}

func TestUpdateTokenServer(t *testing.T) {
	c := &ns.Connection{Path: &ns.Path{Index: 1, PathSegments: []*ns.PathSegment{{Name: "nsc"}, {Name: "nsmgr"}}}}
	exp := time.Now().Add(time.Minute)
	if err := UpdateTokenServer(c, "caller", exp, "mine", exp); err != nil {
		t.Fatal(err)
	}
	if c.Path.PathSegments[0].Token != "caller" || c.Path.PathSegments[1].Token != "mine" {
		t.Fatalf("%+v", c.Path.PathSegments)
	}
}

func TestRefreshDelay(t *testing.T) {
	now := time.Now()
	c := &ns.Connection{Path: &ns.Path{Index: 0, PathSegments: []*ns.PathSegment{
		{Expires: timestamppb.New(now.Add(10 * time.Minute))},
		{Expires: timestamppb.New(now.Add(5 * time.Minute))},
	}}}
	if d := RefreshDelay(c, now); d != time.Minute {
		t.Fatalf("index 0 of 2: %v, want 20%% of the shortest (1m)", d)
	}
}

func TestRegistryUpdatePath(t *testing.T) {
	p := &RegistryPath{}
	if p.JSON() != `{"Index":0,"PathSegments":null}` {
		t.Fatalf("empty path %s", p.JSON())
	}
	back, err := RegistryUpdatePath(p, "client", "registry")
	if err != nil || back != 0 || p.Index != 1 || len(p.PathSegments) != 2 {
		t.Fatalf("%v %v %+v", back, err, p)
	}
	ids := UpdatePathIDs(nil, int(p.Index), "spiffe://td/client", "spiffe://td/registry")
	if len(ids) != 2 || ids[0] != "spiffe://td/client" || ids[1] != "spiffe://td/registry" {
		t.Fatalf("path_ids %v", ids)
	}
	p.Index = back
	if p.JSON() != `{"Index":0,"PathSegments":[{"token":"client"},{"token":"registry"}]}` {
		t.Fatalf("header %s", p.JSON())
	}
	// A refresh with the path the client got back replaces both tokens.
	if _, err := RegistryUpdatePath(p, "client2", "registry2"); err != nil || len(p.PathSegments) != 2 || p.PathSegments[0].Token != "client2" || p.PathSegments[1].Token != "registry2" {
		t.Fatalf("refresh %v %+v", err, p.PathSegments)
	}
}
