package anonymous

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Errors of guest data.
var (
	// ErrNoGuest is returned by UpdateData for a request without a guest: a
	// real user's, a skipped one, or one the store failed.
	ErrNoGuest = errors.New("anonymous: the request has no guest")
	// ErrDataTooLarge is returned by UpdateData when the new data is over
	// Options.MaxDataSize. Nothing is written.
	ErrDataTooLarge = errors.New("anonymous: guest data is over Options.MaxDataSize")
)

// DataFrom returns the data of the request's guest as the middleware read
// it, with the guest, in the same store round trip; nil when the guest has
// none or the request has no guest. It does not see UpdateData's changes
// made during the request: use what UpdateData returns. The result is
// shared by the request: do not modify it.
func DataFrom(ctx context.Context) []byte {
	if s, _ := ctx.Value(ctxKey{}).(*reqState); s != nil && s.guest != nil && s.guest.rec != nil && len(s.guest.rec.Data) > 0 {
		return s.guest.rec.Data
	}
	return nil
}

// UpdateData changes the data of the request's guest: fn gets the current
// data (nil for none; its own copy) and returns the new data, which
// UpdateData writes only if nobody else wrote the guest meanwhile. On such a
// conflict it reads the guest again and calls fn again, so concurrent
// updates (two tabs adding to one cart) all count; fn must therefore have no
// other effect. Uncontended, an update costs one store round trip.
//
// A guest not stored yet (a first visit under PersistOnReturn) is stored
// now, with its data, if its client's budget allows (else ErrOverBudget), and
// its cookie is re-set: call UpdateData before the response is written. The data lives and dies
// with the guest: it expires with it, is deleted with it, and is handed to
// OnLinkAccount when the guest becomes a real user.
//
// It returns fn's error, ErrNoGuest, ErrDataTooLarge, ErrOverBudget, an
// error wrapping ErrClaimed while the guest is being linked (or stored by
// another request), ErrNotFound when the guest is gone, or a store error; in
// every case nothing is written.
func (m *Manager) UpdateData(w http.ResponseWriter, r *http.Request, fn func(data []byte) ([]byte, error)) ([]byte, error) {
	st := m.state(r.Context())
	if st == nil || st.guest == nil || st.guest.rec == nil {
		return nil, ErrNoGuest
	}
	ctx := context.WithoutCancel(r.Context()) // a write begun is finished
	g := st.guest
	var out []byte
	apply := func(rec *Record) error {
		switch {
		case !rec.live():
			return ErrNotFound
		case rec.leased(time.Now()):
			return fmt.Errorf("anonymous: updating guest %s: %w", rec.User.ID, ErrClaimed)
		}
		data, err := fn(append([]byte(nil), rec.Data...))
		if err != nil {
			return err
		}
		if len(data) > m.opts.MaxDataSize {
			return fmt.Errorf("%w: %d bytes, over %d", ErrDataTooLarge, len(data), m.opts.MaxDataSize)
		}
		rec.Data = append([]byte(nil), data...) // the caller keeps its slice
		out = data
		return nil
	}
	rec := g.rec
	if rec.Version == 0 {
		// Not stored yet (a first visit): store it now, with its data, if
		// the client's budget allows. A guest from a first-visit cookie gets
		// a new token, as when lookup stores one (the same for every update
		// of this request); a guest issued on this request keeps its own,
		// which no response has carried yet.
		token := rec.Session.Token
		if !g.issued {
			fresh := newToken(rec.User.ID)
			g.storedAs.CompareAndSwap(nil, &fresh)
			token = *g.storedAs.Load()
		}
		next := m.firstStored(rec, token, time.Now())
		if err := apply(&next); err != nil {
			return nil, err
		}
		_, err := m.storeNew(r, &next, sourceData)
		if err == nil {
			m.replaceCookie(w, token, next.Session.ExpiresAt)
			return out, nil
		}
		if !errors.Is(err, ErrExists) && !errors.Is(err, ErrOverBudget) {
			return nil, err
		}
		// Perhaps stored by an earlier update of this request: then it is
		// this request's to update, whatever the budget says now.
		stored, gerr := m.store.Get(ctx, rec.User.ID)
		switch {
		case errors.Is(gerr, ErrNotFound) && errors.Is(err, ErrOverBudget):
			return nil, err
		case gerr != nil:
			return nil, gerr
		case !stored.live() || subtle.ConstantTimeCompare(stored.TokenHash[:], next.TokenHash[:]) != 1:
			if errors.Is(err, ErrOverBudget) {
				return nil, err
			}
			return nil, fmt.Errorf("anonymous: updating guest %s: %w", rec.User.ID, ErrClaimed)
		}
		stored.Session.Token = token
		rec = stored
	}
	if _, err := m.modify(ctx, rec, apply); err != nil {
		return nil, err
	}
	return out, nil
}

// UpdateJSON is UpdateData for data kept as the JSON of a T: fn changes the
// current value (T's zero value when the guest has none) in place.
func UpdateJSON[T any](m *Manager, w http.ResponseWriter, r *http.Request, fn func(v *T) error) (T, error) {
	var v T
	_, err := m.UpdateData(w, r, func(data []byte) ([]byte, error) {
		v = *new(T)
		if len(data) > 0 {
			if err := json.Unmarshal(data, &v); err != nil {
				return nil, fmt.Errorf("anonymous: guest data is not a %T: %w", v, err)
			}
		}
		if err := fn(&v); err != nil {
			return nil, err
		}
		return json.Marshal(v)
	})
	if err != nil {
		return *new(T), err
	}
	return v, nil
}

// JSONFrom decodes DataFrom(ctx) into a T: T's zero value when the request's
// guest has no data (or there is no guest).
func JSONFrom[T any](ctx context.Context) (T, error) {
	var v T
	if data := DataFrom(ctx); len(data) > 0 {
		if err := json.Unmarshal(data, &v); err != nil {
			return v, fmt.Errorf("anonymous: guest data is not a %T: %w", v, err)
		}
	}
	return v, nil
}
