package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"testing"

	"github.com/guestpass/anonymous"
)

// The Recovery clauses run a real Manager on the store, through a fault
// injector that breaks one write the way a network does: the write is made,
// and its reply is lost, or the client resends it and returns the second
// reply (go-redis does so after a timeout). The Manager recognises its own
// writes by reading the entry back, so each clause holds the store to
// returning, on the Get that follows, the write it made.
//
// A visitor clicks a button whose handler adds one to a counter in its
// guest's data with UpdateData. Its first click stores the guest (Create);
// later clicks Update it.

var recoveryTests = []test{
	{name: "UpdateReplyLost", fn: func(t *testing.T, s anonymous.Store) {
		// The click counts once, and UpdateData reports success.
		r := newRig(t, s)
		v, id := r.storedVisitor(t)
		r.faults.arm("Update", loseReply, nil)
		v.expect(t, "a click whose Update's reply was lost", v.do("/click"), id, 2)
		r.faults.check(t, "a click")
		v.expect(t, "the request after it", v.do("/"), id, 2)
		v.expect(t, "the click after it", v.do("/click"), id, 3)
	}},
	{name: "UpdateResent", fn: func(t *testing.T, s anonymous.Store) {
		// The resend answers ErrConflict: the click still counts once.
		r := newRig(t, s)
		v, id := r.storedVisitor(t)
		r.faults.arm("Update", resend, nil)
		v.expect(t, "a click whose Update was resent", v.do("/click"), id, 2)
		r.faults.check(t, "a click")
		v.expect(t, "the request after it", v.do("/"), id, 2)
		v.expect(t, "the click after it", v.do("/click"), id, 3)
	}},
	{name: "UpdateResentAfterOtherWrite", fn: func(t *testing.T, s anonymous.Store) {
		// Another tab's click lands between the Update and its resend,
		// which finds the version two on: both clicks count, once each.
		r := newRig(t, s)
		v, id := r.storedVisitor(t)
		var other reply
		r.faults.arm("Update", resend, func() { other = v.do("/click") })
		v.expect(t, "a click whose Update was resent after another click", v.do("/click"), id, 2)
		r.faults.check(t, "a click")
		v.expect(t, "the other click, written between the Update and its resend", other, id, 3)
		v.expect(t, "the request after them", v.do("/"), id, 3)
		v.expect(t, "the click after them", v.do("/click"), id, 4)
	}},
	{name: "CreateReplyLost", fn: func(t *testing.T, s anonymous.Store) { createRecovers(t, s, loseReply) }},
	{name: "CreateResent", fn: func(t *testing.T, s anonymous.Store) { createRecovers(t, s, resend) }},
}

// createRecovers breaks the Create that stores a visitor's guest, on its
// first click and on its return: the visitor keeps its guest, and its data.
func createRecovers(t *testing.T, s anonymous.Store, kind fault) {
	r := newRig(t, s)
	broken := map[fault]string{loseReply: "whose Create's reply was lost", resend: "whose Create was resent"}[kind]

	v := r.visitor()
	r.faults.arm("Create", kind, nil)
	first := v.do("/click")
	r.faults.check(t, "a first click")
	if first.ID == "" {
		t.Fatalf("a first click %s was served without a guest: %s", broken, first.Err)
	}
	v.expect(t, "a first click "+broken, first, first.ID, 1)
	v.expect(t, "the request after it", v.do("/"), first.ID, 1)
	v.expect(t, "the click after it", v.do("/click"), first.ID, 2)

	// By default (no PersistOnIssue), a first visit stores nothing; the return
	// stores the guest its first-visit cookie carries.
	w := r.visitor()
	issued := w.do("/")
	if issued.ID == "" {
		t.Fatalf("a first visit was served without a guest: %s", issued.Err)
	}
	r.faults.arm("Create", kind, nil)
	w.expect(t, "a return "+broken, w.do("/"), issued.ID, 0)
	r.faults.check(t, "a return")
	w.expect(t, "the request after it", w.do("/"), issued.ID, 0)
	w.expect(t, "the click after it", w.do("/click"), issued.ID, 1)
}

// rig is a Manager on the store under test, behind a fault injector, and
// the application it serves.
type rig struct {
	faults *faultStore
	h      http.Handler
}

// reply is what the rig's application answers: the request's guest and its
// counter, or what went wrong.
type reply struct {
	ID    string `json:"id"`
	Count int64  `json:"count"`
	Err   string `json:"err"`
}

func newRig(t *testing.T, s anonymous.Store) *rig {
	t.Helper()
	f := &faultStore{Store: s}
	m, err := anonymous.New(f, anonymous.Options{
		Keys:     []anonymous.Key{{Hash: randomValue(32)}},
		Budget:   anonymous.Budget{Off: true}, // every visitor is one client
		ErrorLog: slog.New(slog.NewTextHandler(t.Output(), nil)),
	})
	if err != nil {
		t.Fatalf("anonymous.New = %v", err)
	}
	answer := func(w http.ResponseWriter, r *http.Request, data []byte, err error) {
		rep := reply{}
		if u := anonymous.UserFrom(r.Context()); u != nil {
			rep.ID = u.ID
		}
		if err == nil {
			rep.Count, err = count(data)
		}
		if err != nil {
			rep.Err = err.Error()
		}
		json.NewEncoder(w).Encode(rep)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /click", func(w http.ResponseWriter, r *http.Request) {
		data, err := m.UpdateData(w, r, func(data []byte) ([]byte, error) {
			n, err := count(data)
			return strconv.AppendInt(nil, n+1, 10), err
		})
		if err != nil {
			err = fmt.Errorf("UpdateData = %w, want success", err)
		}
		answer(w, r, data, err)
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		answer(w, r, anonymous.DataFrom(r.Context()), nil)
	})
	return &rig{faults: f, h: m.Middleware(mux)}
}

// count reads the counter in a guest's data; no data is 0.
func count(data []byte) (int64, error) {
	if len(data) == 0 {
		return 0, nil
	}
	n, err := counter(data)
	if err != nil {
		return 0, fmt.Errorf("the guest's data is %q, not a counter", data)
	}
	return n, nil
}

// visitor is a browser: it keeps the cookies it is given.
type visitor struct {
	h       http.Handler
	cookies map[string]string
}

func (r *rig) visitor() *visitor { return &visitor{h: r.h, cookies: map[string]string{}} }

// storedVisitor returns a visitor whose first click stored its guest, and
// the guest's id.
func (r *rig) storedVisitor(t *testing.T) (*visitor, string) {
	t.Helper()
	v := r.visitor()
	rep := v.do("/click")
	if rep.ID == "" || rep.Err != "" || rep.Count != 1 {
		t.Fatalf("a first click, with nothing broken: guest %q, counter %d, error %q; want a guest with a counter of 1", rep.ID, rep.Count, rep.Err)
	}
	return v, rep.ID
}

// do sends a request to path, a click (POST /click) or a look ("/"), with
// the visitor's cookies, and keeps the cookies of the response.
func (v *visitor) do(path string) reply {
	method := http.MethodGet
	if path == "/click" {
		method = http.MethodPost
	}
	req := httptest.NewRequest(method, "https://shop.example"+path, nil)
	for name, value := range v.cookies {
		req.AddCookie(&http.Cookie{Name: name, Value: value})
	}
	w := httptest.NewRecorder()
	v.h.ServeHTTP(w, req)
	res := w.Result()
	for _, c := range res.Cookies() {
		if c.MaxAge < 0 {
			delete(v.cookies, c.Name)
		} else {
			v.cookies[c.Name] = c.Value
		}
	}
	var rep reply
	if err := json.Unmarshal(w.Body.Bytes(), &rep); err != nil || res.StatusCode != http.StatusOK {
		return reply{Err: fmt.Sprintf("%s %s answered %d %q", method, path, res.StatusCode, w.Body)}
	}
	return rep
}

// expect fails t unless rep is a success served to guest id, whose counter
// is n.
func (v *visitor) expect(t *testing.T, what string, rep reply, id string, n int64) {
	t.Helper()
	switch {
	case rep.Err != "":
		t.Errorf("%s: %s", what, rep.Err)
	case rep.ID == "":
		t.Errorf("%s: served without a guest, want guest %s", what, id)
	case rep.ID != id:
		t.Errorf("%s: served guest %s, want the visitor's guest %s", what, rep.ID, id)
	case rep.Count != n:
		t.Errorf("%s: the guest's counter is %d, want %d", what, rep.Count, n)
	}
}

// fault is how faultStore breaks a call.
type fault int

const (
	// loseReply makes the call, then answers errLostReply.
	loseReply fault = iota + 1
	// resend makes the call, then makes it again with the same arguments
	// and answers what the second call answers.
	resend
)

// errLostReply is the answer of a call whose reply was lost: a network
// timeout, as a client reports it.
var errLostReply error = &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}

// faultStore is the store under test with one call broken on demand.
type faultStore struct {
	anonymous.Store
	mu sync.Mutex
	// method is the method whose next call is broken, as kind says, with
	// between run after the call and before its resend; "" for none.
	method  string
	kind    fault
	between func()
	// failed is the error of an armed call that failed by itself, and so
	// was not broken.
	failed error
}

// arm breaks the next call of method ("Create" or "Update").
func (f *faultStore) arm(method string, kind fault, between func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.method, f.kind, f.between, f.failed = method, kind, between, nil
}

// take returns how to break a call of method, disarming it.
func (f *faultStore) take(method string) (fault, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.method != method {
		return 0, nil
	}
	f.method = ""
	return f.kind, f.between
}

func (f *faultStore) Create(ctx context.Context, key string, e anonymous.Entry) error {
	kind, between := f.take("Create")
	return f.call(kind, between, func() error { return f.Store.Create(ctx, key, e) })
}

func (f *faultStore) Update(ctx context.Context, key string, e anonymous.Entry) error {
	kind, between := f.take("Update")
	return f.call(kind, between, func() error { return f.Store.Update(ctx, key, e) })
}

// call makes a call, and breaks it as kind says if it succeeded.
func (f *faultStore) call(kind fault, between func(), call func() error) error {
	err := call()
	if kind == 0 || err != nil {
		if kind != 0 {
			f.mu.Lock()
			f.failed = err
			f.mu.Unlock()
		}
		return err
	}
	if between != nil {
		between()
	}
	if kind == loseReply {
		return errLostReply
	}
	return call()
}

// check fails t unless the call that arm asked to break was made and
// broken.
func (f *faultStore) check(t *testing.T, what string) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.failed != nil:
		t.Fatalf("%s: the call to break failed by itself: %v", what, f.failed)
	case f.method != "":
		t.Fatalf("%s made no %s to break", what, f.method)
	}
}
