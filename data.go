package anonymous

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
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
// Goroutines of one request may call it at once, as long as nothing else
// writes the response's header meanwhile.
//
// A guest not stored yet (a first visit, without PersistOnIssue) is stored
// now, with its data, and its cookie is re-set to the stored guest's. When
// the client's budget or a full store keeps it out, its data is kept in its
// signed first-visit cookie instead (encrypted when the first Key has a
// Block): at most 1
// KiB there (else ErrDataTooLarge), last writer wins between two tabs, and
// the cookie's window starts again as the visitor comes back; the guest is
// stored, data and all, on its first request that the budget allows (see
// docs/first-visit.md).
//
// Call UpdateData before the response's header is written: the package
// wraps no ResponseWriter, so it cannot tell, and returns nil, but the
// browser then keeps the first-visit cookie. Its next request within 10 s
// of the guest's first store (this update's, unless a sibling request
// stored the guest a moment before) still finds the guest, with its data,
// and gets the new cookie; after that, the cookie brings a new guest and the
// data is lost to it. For a guest held in its cookie, the update is lost at once. The data
// lives and dies with the guest: it expires with it, is
// deleted with it, and is handed to OnLinkAccount when the guest becomes a
// real user.
//
// It returns fn's error, ErrNoGuest, ErrDataTooLarge, ErrStoreFull when
// the store has no room for the data to grow (memstore past its MaxBytes),
// an error wrapping ErrClaimed while the guest is being linked, ErrNotFound when the guest is
// gone (linked, deleted, or its first-visit cookie stored it over 10 s
// ago), or a store error; in every case nothing is written. The one
// exception is an error wrapping ErrUncertain: the write was sent and the
// store stopped answering before it could tell, so the change may be there
// (a reply that was merely lost is recognised, and is a success).
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
		// Not stored yet (a first visit): store it now, with its data.
		stored, applied, err := m.storeOnce(w, r.WithContext(ctx), g, sourceData, apply)
		switch {
		case err != nil:
			return nil, err
		case applied:
			return out, nil
		}
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
// guest has no data (or there is no guest). Its error is json.Unmarshal's,
// for data that is not a JSON T (data written by an older T, say).
func JSONFrom[T any](ctx context.Context) (T, error) {
	var v T
	if data := DataFrom(ctx); len(data) > 0 {
		if err := json.Unmarshal(data, &v); err != nil {
			return v, fmt.Errorf("anonymous: guest data is not a %T: %w", v, err)
		}
	}
	return v, nil
}
