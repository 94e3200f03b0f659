package redisstore_test

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// proxy is a TCP proxy between a client and Redis that a test can cut, the
// way a network or a server fails.
type proxy struct {
	ln       net.Listener
	upstream string

	mu    sync.Mutex
	mode  proxyMode
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

type proxyMode int

const (
	forward   proxyMode = iota
	refuse              // every connection is closed as soon as it is made
	blackhole           // connections are accepted and never answered
)

// newProxy starts a proxy to upstream on a free loopback port; it stops
// when the test ends.
func newProxy(t testing.TB, upstream string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, upstream: upstream, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.serve)
	t.Cleanup(func() {
		ln.Close()
		p.set(refuse)
		p.wg.Wait()
	})
	return p
}

func (p *proxy) Addr() string { return p.ln.Addr().String() }

// set switches the mode and closes every open connection, so clients notice
// a cut at once and a restore starts from fresh connections.
func (p *proxy) set(m proxyMode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = m
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		mode := p.mode
		if mode != refuse {
			p.conns[c] = struct{}{}
		}
		p.mu.Unlock()
		switch mode {
		case refuse:
			c.Close()
		case blackhole:
			p.wg.Go(func() { io.Copy(io.Discard, c) })
		case forward:
			p.wg.Go(func() { p.pipe(c) })
		}
	}
}

func (p *proxy) pipe(c net.Conn) {
	defer p.drop(c)
	u, err := net.DialTimeout("tcp", p.upstream, time.Second)
	if err != nil {
		return
	}
	p.mu.Lock()
	if _, open := p.conns[c]; !open { // cut while dialling
		p.mu.Unlock()
		u.Close()
		return
	}
	p.conns[u] = struct{}{}
	p.mu.Unlock()
	defer p.drop(u)
	done := make(chan struct{}, 2)
	go func() { io.Copy(u, c); done <- struct{}{} }()
	go func() { io.Copy(c, u); done <- struct{}{} }()
	<-done
	// One side ended: end both, then wait for the other copy.
	c.Close()
	u.Close()
	<-done
}

func (p *proxy) drop(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}
