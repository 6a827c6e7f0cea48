// Package fdpass passes file descriptors over the unix-socket connections that carry gRPC, the way upstream NSM
// does with github.com/edwarnicke/grpcfd (our own implementation of that wire behaviour, on x/sys/unix):
//
//   - the raw *net.UnixConn is wrapped *below* TLS, so descriptors ride beside the encrypted bytes;
//   - a sender queues descriptors; each goes out as SCM_RIGHTS ancillary data on a sendmsg of ONE byte of the
//     next Write (at most 64 per Write), then the rest of that Write's buffer follows as ordinary bytes;
//   - a reader recvmsg()s with room for 64 descriptors, fstat()s every descriptor it gets and keeps it keyed by
//     (st_dev, st_ino): a second copy of an already known file is closed at once (dedup);
//   - a caller asks for `inode://<dev>/<ino>` and gets its own dup of the descriptor, at once if it is already
//     there, else when it arrives; everything still held is closed with the connection.
//
// The wrapper is its own net.Addr and is returned by RemoteAddr(), so gRPC's peer.Peer.Addr of a call made or
// served over it is the Transceiver (that is how grpcfd exposes it to handlers too).
package fdpass

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// MaxFDsPerWrite is how many descriptors one Write (and one read's control buffer) carries at most.
const MaxFDsPerWrite = 64

// Key identifies a file by the (st_dev, st_ino) pair of fstat(2).
type Key struct {
	Dev uint64
	Ino uint64
}

// URL is the inode URL of the key: inode://<dev>/<ino>.
func (k Key) URL() string { return fmt.Sprintf("inode://%d/%d", k.Dev, k.Ino) }

// Transceiver sends and receives descriptors over one connection.
type Transceiver interface {
	// SendFile queues a dup of f's descriptor to go out with the next bytes written.
	SendFile(f *os.File) error
	// SendFilename opens name with O_PATH (as grpcfd does for filenames) and queues it.
	SendFilename(name string) error
	// RecvFile delivers a dup of the descriptor of (dev, ino) as an *os.File named /proc/<pid>/fd/<n>, at once if
	// it has arrived, else when it does; the channel is closed without a value if the connection closes first.
	RecvFile(k Key) <-chan *os.File
	// RecvFileByURL is RecvFile for an inode://<dev>/<ino> URL.
	RecvFileByURL(inodeURL string) (<-chan *os.File, error)
	// HeldFile is a dup of the descriptor of k if it has arrived already, else nil (nothing is left waiting).
	HeldFile(k Key) *os.File
	// Received lists the keys of the descriptors held (for tests and reports).
	Received() []Key
}

// Conn wraps a unix stream connection; see the package comment.
type Conn struct {
	*net.UnixConn

	sendMu  sync.Mutex
	pending []int // dup'ed descriptors waiting for the next Write

	recvMu  sync.Mutex
	held    map[Key]int
	waiters map[Key][]chan *os.File
	closed  bool
}

// Wrap returns c wrapped when it is a *net.UnixConn (or already wrapped), else c unchanged.
func Wrap(c net.Conn) net.Conn {
	switch u := c.(type) {
	case *Conn:
		return u
	case *net.UnixConn:
		return &Conn{UnixConn: u, held: map[Key]int{}, waiters: map[Key][]chan *os.File{}}
	default:
		return c
	}
}

var _ Transceiver = (*Conn)(nil)
var _ net.Addr = (*Conn)(nil)

// RemoteAddr is the wrapper itself: gRPC copies it into peer.Peer.Addr.
func (c *Conn) RemoteAddr() net.Addr { return c }

// Network is "unix" (net.Addr).
func (c *Conn) Network() string { return "unix" }

// String is the underlying connection's remote address, or its local one for an unnamed peer (net.Addr).
func (c *Conn) String() string {
	if a, ok := c.UnixConn.RemoteAddr().(*net.UnixAddr); ok && a != nil && a.Name != "" {
		return a.Name
	}
	if a, ok := c.UnixConn.LocalAddr().(*net.UnixAddr); ok && a != nil {
		return a.Name
	}
	return ""
}

// SendFile queues a dup of f's descriptor.
func (c *Conn) SendFile(f *os.File) error {
	raw, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var dupErr error
	var fd int
	if err := raw.Control(func(orig uintptr) {
		fd, dupErr = unix.FcntlInt(orig, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return err
	}
	if dupErr != nil {
		return fmt.Errorf("dup of %s: %w", f.Name(), dupErr)
	}
	return c.queue(fd)
}

// SendFilename opens name with O_PATH and queues it.
func (c *Conn) SendFilename(name string) error {
	fd, err := unix.Open(name, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: name, Err: err}
	}
	return c.queue(fd)
}

func (c *Conn) queue(fd int) error {
	c.recvMu.Lock()
	closed := c.closed
	c.recvMu.Unlock()
	if closed {
		_ = unix.Close(fd)
		return errors.New("fdpass: connection closed")
	}
	c.sendMu.Lock()
	c.pending = append(c.pending, fd)
	c.sendMu.Unlock()
	return nil
}

// Write sends queued descriptors, one per byte of b (at most 64 and at most len(b)), each with a sendmsg of
// that single byte, then the rest of b.
func (c *Conn) Write(b []byte) (int, error) {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	n := 0
	for len(c.pending) > 0 && n < len(b) && n < MaxFDsPerWrite {
		fd := c.pending[0]
		wn, _, err := c.WriteMsgUnix(b[n:n+1], unix.UnixRights(fd), nil)
		if err != nil {
			return n, err
		}
		c.pending = c.pending[1:]
		_ = unix.Close(fd)
		n += wn
	}
	if n == len(b) {
		return n, nil
	}
	wn, err := c.UnixConn.Write(b[n:])
	return n + wn, err
}

// Read reads bytes and any descriptors that came with them; descriptors are kept before the bytes are returned,
// so a handler reading a message always finds the descriptors that were sent ahead of it.
func (c *Conn) Read(b []byte) (int, error) {
	oob := make([]byte, unix.CmsgSpace(4*MaxFDsPerWrite))
	n, oobn, _, _, err := c.ReadMsgUnix(b, oob)
	if oobn > 0 {
		c.keep(oob[:oobn])
	}
	if n < 0 {
		n = 0
	}
	if (n == 0 && err == nil && len(b) > 0) || errors.Is(err, io.EOF) {
		err = io.EOF // the end of the stream, plain as net.Conn.Read says it (ReadMsgUnix wraps it)
	}
	return n, err
}

func (c *Conn) keep(oob []byte) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return
	}
	c.recvMu.Lock()
	defer c.recvMu.Unlock()
	for i := range msgs {
		fds, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			continue
		}
		for _, fd := range fds {
			var st unix.Stat_t
			if c.closed || unix.Fstat(fd, &st) != nil {
				_ = unix.Close(fd)
				continue
			}
			k := Key{Dev: uint64(st.Dev), Ino: st.Ino}
			if _, dup := c.held[k]; dup {
				_ = unix.Close(fd)
				continue
			}
			c.held[k] = fd
			for _, w := range c.waiters[k] {
				deliver(fd, w)
			}
			delete(c.waiters, k)
		}
	}
}

// deliver sends a dup of fd on w (buffered, capacity 1) and closes w.
func deliver(fd int, w chan *os.File) {
	if d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0); err == nil {
		w <- os.NewFile(uintptr(d), fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), d))
	}
	close(w)
}

// RecvFile: see Transceiver.
func (c *Conn) RecvFile(k Key) <-chan *os.File {
	w := make(chan *os.File, 1)
	c.recvMu.Lock()
	defer c.recvMu.Unlock()
	if c.closed {
		close(w)
		return w
	}
	if fd, ok := c.held[k]; ok {
		deliver(fd, w)
		return w
	}
	c.waiters[k] = append(c.waiters[k], w)
	return w
}

// HeldFile: see Transceiver.
func (c *Conn) HeldFile(k Key) *os.File {
	c.recvMu.Lock()
	defer c.recvMu.Unlock()
	fd, ok := c.held[k]
	if !ok || c.closed {
		return nil
	}
	w := make(chan *os.File, 1)
	deliver(fd, w)
	return <-w
}

// RecvFileByURL: see Transceiver.
func (c *Conn) RecvFileByURL(inodeURL string) (<-chan *os.File, error) {
	k, err := ParseInodeURL(inodeURL)
	if err != nil {
		return nil, err
	}
	return c.RecvFile(k), nil
}

// Received: see Transceiver.
func (c *Conn) Received() []Key {
	c.recvMu.Lock()
	defer c.recvMu.Unlock()
	keys := make([]Key, 0, len(c.held))
	for k := range c.held {
		keys = append(keys, k)
	}
	return keys
}

// Close closes the connection, every descriptor held or still queued, and every waiter's channel.
func (c *Conn) Close() error {
	err := c.UnixConn.Close()
	c.recvMu.Lock()
	if !c.closed {
		c.closed = true
		for k, fd := range c.held {
			_ = unix.Close(fd)
			delete(c.held, k)
		}
		for k, ws := range c.waiters {
			for _, w := range ws {
				close(w)
			}
			delete(c.waiters, k)
		}
	}
	c.recvMu.Unlock()
	c.sendMu.Lock()
	for _, fd := range c.pending {
		_ = unix.Close(fd)
	}
	c.pending = nil
	c.sendMu.Unlock()
	return err
}
