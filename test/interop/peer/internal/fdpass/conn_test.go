package fdpass

import (
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pair is a connected unix stream socketpair, both ends wrapped.
func pair(t *testing.T) (*Conn, *Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]*Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		_ = f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = Wrap(c).(*Conn)
	}
	t.Cleanup(func() { _ = conns[0].Close(); _ = conns[1].Close() })
	return conns[0], conns[1]
}

func tempFile(t *testing.T, name string) (string, Key) {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(name), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := KeyOfPath(p)
	if err != nil {
		t.Fatal(err)
	}
	return p, k
}

// exchange writes msg on a and reads it fully on b.
func exchange(t *testing.T, a, b *Conn, msg []byte) {
	t.Helper()
	done := make(chan error, 1)
	go func() { _, err := a.Write(msg); done <- err }()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(b, got); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("bytes changed on the way: %q != %q", got, msg)
	}
}

func openFds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestDescriptorsArriveKeyedByDevIno(t *testing.T) {
	a, b := pair(t)
	p1, k1 := tempFile(t, "one")
	p2, k2 := tempFile(t, "two")
	if err := a.SendFilename(p1); err != nil {
		t.Fatal(err)
	}
	if err := a.SendFilename(p2); err != nil {
		t.Fatal(err)
	}
	exchange(t, a, b, []byte("hello, with two descriptors"))
	for _, want := range []struct {
		path string
		key  Key
	}{{p1, k1}, {p2, k2}} {
		ch, err := b.RecvFileByURL(want.key.URL())
		if err != nil {
			t.Fatal(err)
		}
		select {
		case f := <-ch:
			if f == nil {
				t.Fatalf("%s: channel closed without a file", want.key.URL())
			}
			got, err := KeyOfFile(f)
			if err != nil || got != want.key {
				t.Fatalf("%s: got key %v (%v)", want.path, got, err)
			}
			if f.Name() == "" || filepath.Dir(f.Name()) != filepath.Join("/proc", strconv.Itoa(os.Getpid()), "fd") {
				t.Fatalf("received file is named %q, want /proc/<pid>/fd/<n>", f.Name())
			}
			_ = f.Close()
		case <-time.After(time.Second):
			t.Fatalf("%s never arrived", want.key.URL())
		}
	}
}

func TestMoreDescriptorsThanBytesWaitForTheNextWrite(t *testing.T) {
	a, b := pair(t)
	p1, k1 := tempFile(t, "one")
	p2, k2 := tempFile(t, "two")
	_ = a.SendFilename(p1)
	_ = a.SendFilename(p2)
	exchange(t, a, b, []byte("x")) // one byte: only the first descriptor can go
	if got := b.Received(); len(got) != 1 || got[0] != k1 {
		t.Fatalf("after a 1-byte write: held %v, want [%v]", got, k1)
	}
	exchange(t, a, b, []byte("y"))
	if len(b.Received()) != 2 {
		t.Fatalf("after the second write: held %v, want %v and %v", b.Received(), k1, k2)
	}
}

func TestWaiterGetsTheDescriptorWhenItArrives(t *testing.T) {
	a, b := pair(t)
	p, k := tempFile(t, "later")
	ch := b.RecvFile(k) // asked before it was sent
	select {
	case f := <-ch:
		t.Fatalf("got %v before anything was sent", f)
	default:
	}
	_ = a.SendFilename(p)
	exchange(t, a, b, []byte("now"))
	select {
	case f := <-ch:
		if f == nil {
			t.Fatal("closed without a file")
		}
		_ = f.Close()
	case <-time.After(time.Second):
		t.Fatal("the waiter was never served")
	}
}

func TestDuplicatesAreDroppedAndEachAskGetsItsOwnDup(t *testing.T) {
	a, b := pair(t)
	p, k := tempFile(t, "same")
	_ = a.SendFilename(p)
	_ = a.SendFilename(p) // the same file twice: the receiver keeps one
	exchange(t, a, b, []byte("two copies"))
	if got := b.Received(); len(got) != 1 {
		t.Fatalf("held %v, want one key", got)
	}
	before := openFds(t)
	f1 := <-b.RecvFile(k)
	f2 := <-b.RecvFile(k) // second ask: another dup, not the same descriptor
	if f1 == nil || f2 == nil {
		t.Fatal("an ask got nothing")
	}
	if f1.Fd() == f2.Fd() {
		t.Fatalf("both asks got descriptor %d", f1.Fd())
	}
	if openFds(t) != before+2 {
		t.Fatalf("open descriptors %d, want %d", openFds(t), before+2)
	}
	_ = f1.Close()
	_ = f2.Close()
	if openFds(t) != before {
		t.Fatal("closing the dups left descriptors open")
	}
}

func TestCloseReleasesEverything(t *testing.T) {
	a, b := pair(t)
	p1, _ := tempFile(t, "one")
	p2, _ := tempFile(t, "two")
	_ = a.SendFilename(p1)
	exchange(t, a, b, []byte("ab"))
	_ = a.SendFilename(p2) // queued, never written
	waiter := b.RecvFile(Key{Dev: 1, Ino: 2})
	before := openFds(t)
	_ = a.Close()
	_ = b.Close()
	// b held one received descriptor, a one queued descriptor, and each its socket: four fewer.
	if got := openFds(t); got != before-4 {
		t.Fatalf("open descriptors after Close: %d, want %d", got, before-4)
	}
	select {
	case f, ok := <-waiter:
		if ok || f != nil {
			t.Fatal("a waiter got a file after Close")
		}
	case <-time.After(time.Second):
		t.Fatal("a waiter's channel was left open after Close")
	}
	if _, ok := <-b.RecvFile(Key{Dev: 1, Ino: 2}); ok {
		t.Fatal("an ask after Close got a file")
	}
	if err := a.SendFilename(p1); err == nil {
		t.Fatal("SendFilename after Close succeeded")
	}
}

func TestNetnsDescriptorIsRecognised(t *testing.T) {
	a, b := pair(t)
	k, err := KeyOfPath("/proc/self/ns/net")
	if err != nil {
		t.Skip(err)
	}
	if err := a.SendFilename("/proc/self/ns/net"); err != nil {
		t.Fatal(err)
	}
	exchange(t, a, b, []byte("ns"))
	f := <-b.RecvFile(k)
	if f == nil {
		t.Fatal("the namespace descriptor did not arrive")
	}
	defer f.Close()
	if !IsNetns(f) {
		t.Fatal("an O_PATH network namespace descriptor is not recognised as one")
	}
	p, _ := tempFile(t, "plain")
	g, _ := os.Open(p)
	defer g.Close()
	if IsNetns(g) {
		t.Fatal("a regular file is taken for a network namespace")
	}
}

func TestParseInodeURL(t *testing.T) {
	k, err := ParseInodeURL("inode://4/4026531833")
	if err != nil || k != (Key{4, 4026531833}) {
		t.Fatalf("got %v %v", k, err)
	}
	for _, bad := range []string{"file:///proc/self/ns/net", "inode://x/1", "inode://1/y", "inode://1"} {
		if _, err := ParseInodeURL(bad); err == nil {
			t.Fatalf("%q parsed", bad)
		}
	}
}

func TestHeldFileDoesNotWait(t *testing.T) {
	a, b := pair(t)
	p, k := tempFile(t, "held")
	if f := b.HeldFile(k); f != nil {
		t.Fatal("got a file before it was sent")
	}
	_ = a.SendFilename(p)
	exchange(t, a, b, []byte("z"))
	f := b.HeldFile(k)
	if f == nil {
		t.Fatal("a held descriptor was not given")
	}
	_ = f.Close()
}

func TestReadSaysEOFWhenThePeerCloses(t *testing.T) {
	a, b := pair(t)
	_ = a.Close()
	n, err := b.Read(make([]byte, 8))
	if n != 0 || err != io.EOF {
		t.Fatalf("Read after the peer closed: %d, %v; want 0, io.EOF", n, err)
	}
}
