package fdpass

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// ParseInodeURL parses inode://<dev>/<ino>.
func ParseInodeURL(s string) (Key, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Key{}, err
	}
	if u.Scheme != "inode" {
		return Key{}, fmt.Errorf("%q: scheme must be inode", s)
	}
	dev, err := strconv.ParseUint(u.Host, 10, 64)
	if err != nil {
		return Key{}, fmt.Errorf("%q: device: %w", s, err)
	}
	ino, err := strconv.ParseUint(strings.TrimPrefix(u.Path, "/"), 10, 64)
	if err != nil {
		return Key{}, fmt.Errorf("%q: inode: %w", s, err)
	}
	return Key{Dev: dev, Ino: ino}, nil
}

// KeyOfPath is the (dev, ino) of the file at path (stat(2), following links, as grpcfd's FilenameToURL).
func KeyOfPath(path string) (Key, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return Key{}, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	return Key{Dev: uint64(st.Dev), Ino: st.Ino}, nil
}

// KeyOfFile is the (dev, ino) of an open file.
func KeyOfFile(f *os.File) (Key, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return Key{}, err
	}
	return Key{Dev: uint64(st.Dev), Ino: st.Ino}, nil
}

// IsNetns tells whether f is a network namespace (nsfs, NS_GET_NSTYPE = CLONE_NEWNET). An O_PATH descriptor
// cannot take the ioctl: it is reopened read-only through /proc/self/fd first.
func IsNetns(f *os.File) bool {
	typ, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	if err != nil {
		g, openErr := os.Open(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
		if openErr != nil {
			return false
		}
		defer g.Close()
		typ, err = unix.IoctlRetInt(int(g.Fd()), unix.NS_GET_NSTYPE)
		if err != nil {
			return false
		}
	}
	return typ == unix.CLONE_NEWNET
}

// FromPeer returns the Transceiver of a call's peer (its Addr), if the call went over a wrapped connection.
func FromPeer(p *peer.Peer) (Transceiver, bool) {
	if p == nil {
		return nil, false
	}
	t, ok := p.Addr.(Transceiver)
	return t, ok
}

// FromContext returns the Transceiver of the call in ctx (server handlers, per-RPC credentials).
func FromContext(ctx context.Context) (Transceiver, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, false
	}
	return FromPeer(p)
}

// TransportCredentials wraps inner (TLS) so that unix-socket connections are wrapped below it.
func TransportCredentials(inner credentials.TransportCredentials) credentials.TransportCredentials {
	return &wrapCreds{TransportCredentials: inner}
}

type wrapCreds struct {
	credentials.TransportCredentials
}

func (w *wrapCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return w.TransportCredentials.ClientHandshake(ctx, authority, Wrap(raw))
}

func (w *wrapCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return w.TransportCredentials.ServerHandshake(Wrap(raw))
}

func (w *wrapCreds) Clone() credentials.TransportCredentials {
	return &wrapCreds{TransportCredentials: w.TransportCredentials.Clone()}
}
