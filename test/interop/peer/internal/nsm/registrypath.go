package nsm

import (
	"encoding/json"
	"fmt"
)

// RegistryPathKey is the metadata key (request) and header key (response) of a registration's path.
const RegistryPathKey = "path"

// RegistryPath is the private path a registration carries as JSON in gRPC metadata (sdk
// pkg/registry/common/grpcmetadata): capitalised field names, lower-case "token".
type RegistryPath struct {
	Index        uint32
	PathSegments []*RegistrySegment
}

// RegistrySegment is one hop's token.
type RegistrySegment struct {
	Token string `json:"token"`
}

// JSON is the metadata value (an empty path is {"Index":0,"PathSegments":null}, as upstream's first Register).
func (p *RegistryPath) JSON() string {
	b, _ := json.Marshal(p)
	return string(b)
}

// ParseRegistryPath reads a metadata value.
func ParseRegistryPath(s string) (*RegistryPath, error) {
	p := &RegistryPath{}
	if err := json.Unmarshal([]byte(s), p); err != nil {
		return nil, fmt.Errorf("path metadata %q: %w", s, err)
	}
	return p, nil
}

// Tokens of the path's segments.
func (p *RegistryPath) Tokens() []string {
	out := make([]string, len(p.PathSegments))
	for i, s := range p.PathSegments {
		out[i] = s.Token
	}
	return out
}

// Clone copies the path.
func (p *RegistryPath) Clone() *RegistryPath {
	c := &RegistryPath{Index: p.Index}
	for _, s := range p.PathSegments {
		c.PathSegments = append(c.PathSegments, &RegistrySegment{Token: s.Token})
	}
	return c
}

// RegistryUpdatePath is what an upstream registry server's updatepath (sdk pkg/registry/common/updatepath) does
// with a path: an empty path gets two segments, the caller's (its metadata token) and the server's, index 1; else
// the index moves on, the previous segment takes the caller's token and the current one is the server's (appended
// on a first pass, replaced on a refresh). It returns the index to send back (the caller's).
func RegistryUpdatePath(p *RegistryPath, callerToken, ownToken string) (uint32, error) {
	if len(p.PathSegments) == 0 {
		p.PathSegments = []*RegistrySegment{{Token: callerToken}, {Token: ownToken}}
		p.Index = 1
		return 0, nil
	}
	if int(p.Index)+1 > len(p.PathSegments) {
		return 0, fmt.Errorf("Path.Index+1==%d should be less or equal len(Path.PathSegments)==%d", p.Index+1, len(p.PathSegments))
	}
	prev := p.PathSegments[p.Index]
	p.Index++
	prev.Token = callerToken
	if int(p.Index) >= len(p.PathSegments) {
		p.PathSegments = append(p.PathSegments, &RegistrySegment{Token: ownToken})
	} else {
		p.PathSegments[p.Index].Token = ownToken
	}
	return p.Index - 1, nil
}

// UpdatePathIDs is how upstream's registry updatepath records ids: path_ids[index-1] = caller, path_ids[index] =
// server, appending when the list is shorter.
func UpdatePathIDs(ids []string, index int, callerID, ownID string) []string {
	set := func(ids []string, i int, id string) []string {
		if i >= len(ids) {
			return append(ids, id)
		}
		ids[i] = id
		return ids
	}
	ids = set(ids, index-1, callerID)
	return set(ids, index, ownID)
}
