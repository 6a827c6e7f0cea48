package nsm

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"sync"

	ns "nsm-ts.local/interop/peer/gen/networkservice"
	"nsm-ts.local/interop/peer/internal/fdpass"
)

// Mechanism constants (api pkg/api/networkservice/mechanisms).
const (
	KernelType  = "KERNEL"
	ClsLocal    = "LOCAL"
	InodeURLKey = "inodeURL"
	IfNameKey   = "name"
)

// SendFDs is upstream's sendfd for one call: every file:// inodeURL is replaced by inode://<dev>/<ino> and the
// file queued to go out on the call's connection (SendOn); Back maps the inode URLs to the original file URLs so
// a response can be translated back.
type SendFDs struct {
	Files []string
	Back  map[string]string
}

// Swap replaces a file:// inodeURL in params.
func (s *SendFDs) Swap(params map[string]string) error {
	raw, ok := params[InodeURLKey]
	if !ok {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("failed to parse url %s: %w", raw, err)
	}
	if u.Scheme != "file" {
		return nil
	}
	k, err := fdpass.KeyOfPath(u.Path)
	if err != nil {
		return fmt.Errorf("failed to convert a filename %s to URL: %w", u.Path, err)
	}
	if s.Back == nil {
		s.Back = map[string]string{}
	}
	params[InodeURLKey] = k.URL()
	if _, seen := s.Back[k.URL()]; !seen {
		s.Files = append(s.Files, u.Path)
	}
	s.Back[k.URL()] = raw
	return nil
}

// SendOn queues the files on a transceiver (the connection the call goes out on).
func (s *SendFDs) SendOn(t fdpass.Transceiver) error {
	for _, f := range s.Files {
		if err := t.SendFilename(f); err != nil {
			return fmt.Errorf("failed to send a file %s (the file probably doesn't exist): %w", f, err)
		}
	}
	return nil
}

// Restore translates an inodeURL we sent back to its file:// URL.
func (s *SendFDs) Restore(params map[string]string) {
	if f, ok := s.Back[params[InodeURLKey]]; ok && params != nil {
		params[InodeURLKey] = f
	}
}

// Files received for one connection, as upstream recvfd's per-connection file map: inode URL → file, and back.
type Files struct {
	mu      sync.Mutex
	byInode map[string]*os.File
	inodeOf map[string]string // file name → inode URL
}

// NewFiles makes an empty map.
func NewFiles() *Files {
	return &Files{byInode: map[string]*os.File{}, inodeOf: map[string]string{}}
}

// Recv is upstream's recvfd for one set of parameters: an inode:// inodeURL waits for its descriptor on t until
// ctx ends (then fails as upstream: "timeout in recvfd waiting for inode://…") and is swapped for
// file:///proc/<pid>/fd/<n>. It returns the file, or nil when there was nothing to receive.
func (f *Files) Recv(ctx context.Context, t fdpass.Transceiver, params map[string]string) (*os.File, error) {
	raw, ok := params[InodeURLKey]
	if !ok {
		return nil, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("failed to parse url %s: %w", raw, err)
	}
	if u.Scheme != "inode" {
		return nil, nil
	}
	f.mu.Lock()
	file, have := f.byInode[raw]
	f.mu.Unlock()
	if !have {
		if t == nil {
			return nil, fmt.Errorf("timeout in recvfd waiting for %s: no descriptor passing on this connection", raw)
		}
		ch, err := t.RecvFileByURL(raw)
		if err != nil {
			return nil, fmt.Errorf("failed to receive file by url %s: %w", raw, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("timeout in recvfd waiting for %s: %w", raw, ctx.Err())
		case file = <-ch:
			if file == nil {
				return nil, fmt.Errorf("nil file received for %s: the connection closed", raw)
			}
		}
		f.mu.Lock()
		f.byInode[raw] = file
		f.mu.Unlock()
	}
	f.mu.Lock()
	f.inodeOf[file.Name()] = raw
	f.mu.Unlock()
	params[InodeURLKey] = (&url.URL{Scheme: "file", Path: file.Name()}).String()
	return file, nil
}

// TryRecv is Recv that does not wait: it takes the descriptor only if it has already arrived (for a hop that,
// like upstream's NSE, has no recvfd element but reports what it was sent).
func (f *Files) TryRecv(t fdpass.Transceiver, params map[string]string) *os.File {
	raw := params[InodeURLKey]
	k, err := fdpass.ParseInodeURL(raw)
	if err != nil || t == nil {
		return nil
	}
	f.mu.Lock()
	_, have := f.byInode[raw]
	f.mu.Unlock()
	if !have {
		file := t.HeldFile(k)
		if file == nil {
			return nil
		}
		f.mu.Lock()
		f.byInode[raw] = file
		f.mu.Unlock()
	}
	got, _ := f.Recv(context.Background(), t, params)
	return got
}

// SwapBack puts the inode URL back where a received file's URL is (a server's response to its caller).
func (f *Files) SwapBack(params map[string]string) {
	raw, ok := params[InodeURLKey]
	if !ok {
		return
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "file" {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if inode, ok := f.inodeOf[u.Path]; ok {
		params[InodeURLKey] = inode
	}
}

// Close closes every received file.
func (f *Files) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, file := range f.byInode {
		_ = file.Close()
		delete(f.byInode, k)
	}
}

// KernelPreference is the first KERNEL mechanism preference (or the connection's mechanism when it is KERNEL).
func KernelPreference(req *ns.NetworkServiceRequest) *ns.Mechanism {
	if m := req.GetConnection().GetMechanism(); m.GetType() == KernelType {
		return m
	}
	for _, m := range req.GetMechanismPreferences() {
		if m.GetType() == KernelType {
			return m
		}
	}
	return nil
}

// AllMechanisms lists the request's preferences and its connection's mechanism (what upstream's recvfd and
// sendfd look at).
func AllMechanisms(req *ns.NetworkServiceRequest) []*ns.Mechanism {
	out := append([]*ns.Mechanism{}, req.GetMechanismPreferences()...)
	if m := req.GetConnection().GetMechanism(); m != nil {
		out = append(out, m)
	}
	return out
}
