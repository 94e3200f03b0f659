package redisstore_test

import (
	"bytes"
	"errors"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// slowProxy is a TCP proxy in front of a healthy Redis that holds back the
// reply to one command: the first that a test's predicate matches after
// arm, past the client's read timeout. Everything else flows through as it
// comes. It reads the client's commands only to recognise that one (RESP
// arrays of bulk strings, several to a packet in a pipeline); replies are
// copied blind. A client sends a connection's next command only once it
// has read the last reply, so the bytes Redis sends after the matched
// command are its reply.
type slowProxy struct {
	ln       net.Listener
	upstream string
	wg       sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	arm   *slowArm   // nil when not armed
	held  *heldReply // the held reply, once there was one
}

type slowArm struct {
	match    func(cmd []string) bool
	skip     int           // matching commands to let through first
	hold     time.Duration // how long the reply is held
	matching int           // commands match accepted since arm
}

// heldReply is what the proxy saw of the command whose reply it held.
type heldReply struct {
	Cmd      []string      // the command, name and arguments
	Reply    string        // the reply's first bytes, as Redis sent them
	Held     time.Duration // from forwarding the command to delivery or hang-up
	HungUp   bool          // the client closed the connection before the reply was due
	Resent   int           // identical commands seen after it
	Matching int           // commands the predicate accepted since arm, this one included
	start    time.Time
	done     chan struct{} // closed once the reply was delivered or the client hung up
}

// newSlowProxy starts a proxy to upstream on a free loopback port; it stops
// when the test ends.
func newSlowProxy(t testing.TB, upstream string) *slowProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &slowProxy{ln: ln, upstream: upstream, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.serve)
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for c := range p.conns {
			c.Close()
		}
		p.conns = nil
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *slowProxy) Addr() string { return p.ln.Addr().String() }

// armFor makes the proxy hold for hold the reply to the first command
// match accepts after skip others it accepts.
func (p *slowProxy) armFor(match func(cmd []string) bool, skip int, hold time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.arm, p.held = &slowArm{match: match, skip: skip, hold: hold}, nil
}

// report waits until the held reply was delivered or its client hung up,
// for at most wait, and returns what the proxy saw; nil if no reply was
// held.
func (p *slowProxy) report(wait time.Duration) *heldReply {
	p.mu.Lock()
	h := p.held
	p.mu.Unlock()
	if h == nil {
		return nil
	}
	select {
	case <-h.done:
	case <-time.After(wait):
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	r := *h
	r.Matching = p.arm.matching
	return &r
}

func (p *slowProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.relay(c) })
	}
}

// track records open connections, so that the end of the test closes them;
// it reports false once the proxy is closing.
func (p *slowProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *slowProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
	}
}

// relay carries one client connection: its commands up in this goroutine,
// Redis's replies down in another.
func (p *slowProxy) relay(c net.Conn) {
	defer c.Close()
	u, err := net.DialTimeout("tcp", p.upstream, time.Second)
	if err != nil {
		return
	}
	defer u.Close()
	if !p.track(c, u) {
		return
	}
	defer p.untrack(c, u)
	hold := make(chan time.Time, 1) // when the held reply is due
	gone := make(chan struct{})     // the client hung up
	var down sync.WaitGroup
	down.Go(func() {
		p.replies(c, u, hold, gone)
		c.Close() // Redis went away: so does the client's connection
	})
	p.commands(c, u, hold)
	close(gone)
	u.Close()
	down.Wait()
}

// commands copies the client's bytes to Redis, and arms hold before
// forwarding the packet that completes the matched command.
func (p *slowProxy) commands(c, u net.Conn, hold chan<- time.Time) {
	buf := make([]byte, 32<<10)
	var pending []byte
	parse := true
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if parse {
				var cmds [][]string
				cmds, pending, parse = splitCommands(append(pending, buf[:n]...))
				for _, cmd := range cmds {
					if due, ok := p.saw(cmd); ok {
						hold <- due // buffered, and one command per arm fires
					}
				}
			}
			if _, err := u.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// replies copies Redis's bytes to the client, holding the first read after
// hold fired until it is due or the client hangs up.
func (p *slowProxy) replies(c, u net.Conn, hold <-chan time.Time, gone <-chan struct{}) {
	buf := make([]byte, 32<<10)
	for {
		n, err := u.Read(buf)
		if n > 0 {
			select {
			case due := <-hold:
				if !p.wait(buf[:n], due, gone) {
					return
				}
			default:
			}
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// wait holds reply until due, and reports false if the client hung up first.
func (p *slowProxy) wait(reply []byte, due time.Time, gone <-chan struct{}) bool {
	p.mu.Lock()
	h := p.held
	h.Reply = string(reply[:min(len(reply), 64)])
	p.mu.Unlock()
	timer := time.NewTimer(time.Until(due))
	defer timer.Stop()
	delivered := true
	select {
	case <-timer.C:
	case <-gone:
		delivered = false
	}
	p.mu.Lock()
	h.Held, h.HungUp = time.Since(h.start), !delivered
	close(h.done)
	p.mu.Unlock()
	return delivered
}

// saw counts cmd and reports whether its reply is to be held, and until when.
func (p *slowProxy) saw(cmd []string) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	a, h := p.arm, p.held
	if a == nil {
		return time.Time{}, false
	}
	if h != nil && slices.Equal(h.Cmd, cmd) {
		h.Resent++
	}
	if !a.match(cmd) {
		return time.Time{}, false
	}
	if a.matching++; h != nil || a.matching <= a.skip {
		return time.Time{}, false
	}
	now := time.Now()
	p.held = &heldReply{Cmd: cmd, start: now, done: make(chan struct{})}
	return now.Add(a.hold), true
}

var errNotRESP = errors.New("not a RESP array of bulk strings")

// splitCommands parses the complete commands at the start of b and returns
// them with the incomplete rest. ok is false when b holds something else
// than a command (go-redis sends none): the connection is then no longer
// parsed, only copied.
func splitCommands(b []byte) (cmds [][]string, rest []byte, ok bool) {
	for len(b) > 0 {
		cmd, n, err := parseCommand(b)
		switch {
		case err != nil:
			return cmds, nil, false
		case n == 0:
			return cmds, b, true
		}
		cmds, b = append(cmds, cmd), b[n:]
	}
	return cmds, nil, true
}

// parseCommand parses one "*N\r\n" then N × "$len\r\n<bytes>\r\n" at the
// start of b; n is 0 when b holds only part of it.
func parseCommand(b []byte) (cmd []string, n int, err error) {
	count, i, err := respLength(b, 0, '*')
	if err != nil || i == 0 {
		return nil, 0, err
	}
	for range count {
		size, j, err := respLength(b, i, '$')
		if err != nil || j == 0 {
			return nil, 0, err
		}
		if len(b) < j+size+2 {
			return nil, 0, nil
		}
		if !bytes.Equal(b[j+size:j+size+2], []byte("\r\n")) {
			return nil, 0, errNotRESP
		}
		cmd, i = append(cmd, string(b[j:j+size])), j+size+2
	}
	return cmd, i, nil
}

// respLength reads the line "<kind><decimal>\r\n" at b[i:] and returns the
// number and the offset after the line; that offset is 0 when the line is
// not complete yet.
func respLength(b []byte, i int, kind byte) (int, int, error) {
	end := bytes.Index(b[i:], []byte("\r\n"))
	if end < 0 {
		if len(b)-i > 32 {
			return 0, 0, errNotRESP
		}
		return 0, 0, nil
	}
	line := b[i : i+end]
	if len(line) < 2 || line[0] != kind {
		return 0, 0, errNotRESP
	}
	v, err := strconv.Atoi(string(line[1:]))
	if err != nil || v < 0 || v > 64<<20 {
		return 0, 0, errNotRESP
	}
	return v, i + end + 2, nil
}

// TestLostReplyProxySplit feeds splitCommands a pipeline byte by byte, as
// a connection may deliver it, and a stream that is not RESP.
func TestLostReplyProxySplit(t *testing.T) {
	pipeline := "*3\r\n$3\r\nset\r\n$4\r\nk{1}\r\n$2\r\na\n\r\n*2\r\n$3\r\nget\r\n$0\r\n\r\n"
	want := [][]string{{"set", "k{1}", "a\n"}, {"get", ""}}
	var got [][]string
	var pending []byte
	for i := range len(pipeline) {
		cmds, rest, ok := splitCommands(append(pending, pipeline[i]))
		if !ok {
			t.Fatalf("byte %d: not RESP", i)
		}
		got, pending = append(got, cmds...), rest
	}
	if len(pending) != 0 || len(got) != len(want) || !slices.Equal(got[0], want[0]) || !slices.Equal(got[1], want[1]) {
		t.Fatalf("got %q with %q left, want %q", got, pending, want)
	}
	for _, bad := range []string{"PING\r\n", "*1\r\n+OK\r\n", "*1\r\n$2\r\nabcd\r\n", "*x\r\n"} {
		if _, _, ok := splitCommands([]byte(bad)); ok {
			t.Errorf("%q parsed as RESP", bad)
		}
	}
}
