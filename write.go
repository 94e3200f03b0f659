package anonymous

import (
	"context"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
)

// How the Manager writes a record exactly once, whatever the store's
// replies: every write carries a random write id, which the record keeps
// (its last maxWrites), so that a write whose reply was lost is recognised
// by reading the record back. A client that resent it (go-redis does, on a
// timeout) gets ErrConflict or ErrExists for its own write; the read-back
// tells the two apart. That holds while fewer than maxWrites other writes
// land between the lost reply and the read-back: a guest's writes are its
// visitor's, a few at a time.

// maxTries bounds how often modify reads a record again after a conflict:
// each conflict is another writer's success, so even 64 requests writing
// one guest at once all get through.
const maxTries = 100

// maxFailures bounds how often modify and create send a write again after
// the store failed and a read showed the write absent. Each try
// compare-and-swaps on what was read, so a late copy of an earlier try
// cannot be applied as well.
const maxFailures = 2

// errStop is returned by a modify function to end modify without writing
// and without an error.
var errStop = errors.New("anonymous: nothing to write")

// uncertain wraps a failed write's error, and the failed read's that would
// have told its outcome.
func uncertain(err, read error) error {
	if read == nil || errors.Is(err, read) {
		return fmt.Errorf("%w: %w", ErrUncertain, err)
	}
	return fmt.Errorf("%w: %w (and reading it back: %w)", ErrUncertain, err, read)
}

// answer reports whether err is one of the Store contract's answers, which
// say what the store did, rather than a failure, which leaves it unknown.
func answer(err error) bool {
	return errors.Is(err, ErrConflict) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrExists) || errors.Is(err, ErrStoreFull)
}

// modify writes fn's change of rec back to the store. On a conflict it reads
// the record again and applies fn to it afresh, so that no concurrent write
// is lost. fn changes a copy and may refuse with an error, which modify
// returns. A guest read again under another token is not rec's guest (a
// stale first-visit cookie's, say): modify returns ErrNotFound. The result
// is the record as written, with rec's token.
//
// Every try carries one write id. After a conflict or a failed call, the
// record read again holds that id when one of the tries was written after
// all (its reply was lost, and a resend found the version moved on): that
// is modify's success, and the change is not applied twice. When the read
// fails too, the outcome is unknown: ErrUncertain.
func (m *Manager) modify(ctx context.Context, rec *Record, fn func(*Record) error) (*Record, error) {
	token, hash := rec.Session.Token, rec.TokenHash
	w := newWriteID()
	failures := 0
	for try := 1; ; try++ {
		p := &stamped{rec: *rec}
		next := &p.rec
		next.Session.Token = "" // a store never sees a token
		if err := fn(next); err != nil {
			return nil, err
		}
		next.writes = stamp(next.writes, w, &p.room)
		err := m.put(ctx, next, 0, false, next.durable())
		if err == nil {
			next.Version++
			next.Session.Token = token
			return next, nil
		}
		got, done, err := m.recover(ctx, rec.User.ID, w, err, next.durable())
		switch {
		case done && err != nil:
			return nil, err
		case done:
			got.Session.Token = token
			return got, nil
		case !answer(err):
			if failures++; failures > maxFailures {
				return nil, uncertain(err, nil)
			}
		case try >= maxTries:
			return nil, err
		}
		rec = got
		if rec.live() && subtle.ConstantTimeCompare(rec.TokenHash[:], hash[:]) != 1 {
			return nil, ErrNotFound
		}
	}
}

// recover reads guest id back after write w failed with err. It is done,
// with the record, when the write was made after all (a durable one is
// confirmed), and done with an error when it was refused or its outcome
// cannot be learned; otherwise it returns the record read, for the write
// to be tried again on it, and err.
func (m *Manager) recover(ctx context.Context, id string, w uint64, err error, durable bool) (*Record, bool, error) {
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrStoreFull) {
		return nil, true, err
	}
	got, gerr := m.get(ctx, id)
	switch {
	case gerr == nil && got.wrote(w):
		if durable {
			if gerr = m.confirm(ctx, got, w); gerr != nil {
				return nil, true, gerr
			}
		}
		return got, true, nil
	case errors.Is(gerr, ErrNotFound):
		return nil, true, gerr
	case gerr != nil:
		return nil, true, uncertain(err, gerr)
	}
	return got, false, err
}

// get reads the record of guest id.
func (m *Manager) get(ctx context.Context, id string) (*Record, error) {
	e, err := m.store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	rec, err := decodeRecord(id, e)
	if err != nil {
		return nil, fmt.Errorf("%w: guest %s, version %d", err, id, e.Version)
	}
	return rec, nil
}

// getInto reads the record of guest id into rec (see decodeInto).
func (m *Manager) getInto(ctx context.Context, id string, rec *Record, text []byte) error {
	e, err := m.store.Get(ctx, id)
	if err != nil {
		return err
	}
	if err := decodeInto(rec, text, id, e); err != nil {
		return fmt.Errorf("%w: guest %s, version %d", err, id, e.Version)
	}
	return nil
}

// put writes rec, stamped with write id w unless it is 0: a Create when
// create is set, else an Update of version rec.Version; durable sets
// Entry.Durable. The value is encoded into a pooled buffer: a Store keeps
// its own copy.
func (m *Manager) put(ctx context.Context, rec *Record, w uint64, create, durable bool) error {
	buf := putBuffers.Get().(*[]byte)
	defer func() {
		if cap(*buf) <= 8<<10 {
			putBuffers.Put(buf)
		}
	}()
	*buf = appendRecord((*buf)[:0], rec, w)
	e := Entry{Value: *buf, Version: rec.Version, Expires: rec.Session.ExpiresAt, Durable: durable}
	if create {
		return m.store.Create(ctx, rec.User.ID, e)
	}
	return m.store.Update(ctx, rec.User.ID, e)
}

var putBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// create stores rec as a new guest, as version 1. When the store answers
// ErrExists or fails, it reads the guest back: a record that holds this
// call's write id is this call's, written though its reply was lost (a
// resent Create answers ErrExists), and counts as created. A sibling's
// record, which has the same token, does not: that is ErrExists. When the
// read finds nothing, the Create is sent again; when it fails, the outcome
// is unknown: ErrUncertain.
func (m *Manager) create(ctx context.Context, rec *Record) error {
	w := newWriteID()
	for failures := 0; ; failures++ {
		err := m.put(ctx, rec, w, true, rec.durable())
		if err == nil || errors.Is(err, ErrStoreFull) {
			return err
		}
		got, gerr := m.get(ctx, rec.User.ID)
		switch {
		case gerr == nil && got.wrote(w):
			if !rec.durable() {
				return nil
			}
			if err := m.confirm(ctx, got, w); err != nil {
				return &unconfirmed{rec: got, err: err}
			}
			return nil
		case gerr == nil:
			return fmt.Errorf("%w: %w", ErrExists, err) // another request's
		case !errors.Is(gerr, ErrNotFound):
			return uncertain(err, gerr)
		case errors.Is(err, ErrExists):
			return err // it expired meanwhile
		case failures >= maxFailures:
			return uncertain(err, nil)
		}
	}
}

// confirm writes rec again, durably, as its next version. rec holds a
// Durable write of this Manager's, write id w, that failed, and that a read
// found: the read shows that the store has it, not that it would survive a
// failover (a write that too few replicas acknowledged is still on the
// master). Its replicas acknowledging the next write shows they have both.
// Another writer's write meanwhile is read, and confirmed in turn while it
// still holds w.
func (m *Manager) confirm(ctx context.Context, rec *Record, w uint64) error {
	for try := 1; ; try++ {
		err := m.put(ctx, rec, 0, false, true)
		if err == nil {
			rec.Version++
			return nil
		}
		if !errors.Is(err, ErrConflict) || try == maxTries {
			return err
		}
		got, gerr := m.get(ctx, rec.User.ID)
		switch {
		case gerr != nil:
			return gerr
		case !got.wrote(w):
			return err // written over and over since: nothing of ours to confirm
		}
		token := rec.Session.Token
		*rec = *got
		rec.Session.Token = token
	}
}

// unconfirmed is create's error for a guest it stored, as a read showed,
// whose Durable write the store did not confirm: the guest is stored, but
// may not survive a failover. rec is the guest as read.
type unconfirmed struct {
	rec *Record
	err error
}

func (u *unconfirmed) Error() string {
	return "anonymous: guest stored but not confirmed: " + u.err.Error()
}
func (u *unconfirmed) Unwrap() error { return u.err }

// Record returns the record the store holds for the guest with this id:
// the guest, or what a deleted or linked guest leaves until its expiry
// (Deleted, LinkedTo). It returns ErrNotFound when there is none. It is for
// tools, tests and monitoring; a request's guest is UserFrom's.
func (m *Manager) Record(ctx context.Context, id string) (*Record, error) {
	return m.get(ctx, id)
}

// newWriteID returns a random id for a write; 0 is never one.
func newWriteID() uint64 { return rand.Uint64() | 1 }

// stamp returns writes, a record's write ids, with w added and the oldest
// dropped past maxWrites. The ids are laid out in room, which must live as
// long as the record: see stamped.
func stamp(writes []byte, w uint64, room *[8 * maxWrites]byte) []byte {
	if len(writes) == len(room) {
		writes = writes[8:]
	}
	b := binary.LittleEndian.AppendUint64(room[:copy(room[:], writes)], w)
	return b[:len(b):len(b)]
}

// stamped is a record about to be written, and room for its write ids.
type stamped struct {
	rec  Record
	room [8 * maxWrites]byte
}

// wrote reports whether write id w is among rec's last writes.
func (rec *Record) wrote(w uint64) bool {
	for b := rec.writes; len(b) >= 8; b = b[8:] {
		if binary.LittleEndian.Uint64(b) == w {
			return true
		}
	}
	return false
}
