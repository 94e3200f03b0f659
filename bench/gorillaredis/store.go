// Package gorillaredis is a small gorilla/sessions Store on go-redis v9,
// written for the comparison benchmarks: no maintained gorilla store builds
// on go-redis v9, and the benchmarks compare against Redis-backed sessions
// on the same client library. The cookie carries only the session id,
// signed with securecookie; the values live gob-encoded in one Redis key
// with a TTL.
//
// It is the benchmarks' own code, not a published gorilla store.
package gorillaredis

import (
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"encoding/gob"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"
	"github.com/redis/go-redis/v9"
)

// DefaultMaxAge is the sessions' lifetime when Store.Options.MaxAge is zero
// at New: 30 days, as gorilla's CookieStore.
const DefaultMaxAge = 30 * 24 * 3600

// Store is a sessions.Store keeping session values in Redis. Create it with
// New. It is safe for concurrent use as long as Options is not changed
// concurrently with requests.
type Store struct {
	client redis.UniversalClient
	prefix string
	codecs []securecookie.Codec
	// Options are the cookies' attributes and the default MaxAge of new
	// sessions. Default: Path "/", MaxAge DefaultMaxAge, HttpOnly, Secure,
	// SameSite Lax.
	Options *sessions.Options
}

var _ sessions.Store = (*Store)(nil)

// New returns a Store on client, writing keys that start with prefix and
// signing the cookies with keyPairs (as securecookie.CodecsFromPairs takes
// them: hash key, block key, ...). It does not own client.
func New(client redis.UniversalClient, prefix string, keyPairs ...[]byte) (*Store, error) {
	if client == nil {
		return nil, errors.New("gorillaredis: nil client")
	}
	if len(keyPairs) == 0 {
		return nil, errors.New("gorillaredis: no keys")
	}
	codecs := securecookie.CodecsFromPairs(keyPairs...)
	for _, c := range codecs {
		if sc, ok := c.(*securecookie.SecureCookie); ok {
			sc.MaxAge(DefaultMaxAge)
		}
	}
	return &Store{
		client: client,
		prefix: prefix,
		codecs: codecs,
		Options: &sessions.Options{
			Path: "/", MaxAge: DefaultMaxAge, HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode,
		},
	}, nil
}

// Get returns the request's session named name through gorilla's
// per-request registry, so repeated calls in one request share one load.
func (s *Store) Get(r *http.Request, name string) (*sessions.Session, error) {
	return sessions.GetRegistry(r).Get(s, name)
}

// New loads the session the request's cookie names, or returns a new, empty
// one (IsNew true) when there is no valid cookie or Redis has no such key.
// A cookie that fails to verify is not an error: it counts as none, like an
// expired session. A Redis failure is returned with a new session.
func (s *Store) New(r *http.Request, name string) (*sessions.Session, error) {
	sess := sessions.NewSession(s, name)
	opts := *s.Options
	sess.Options = &opts
	sess.IsNew = true
	c, err := r.Cookie(name)
	if err != nil {
		return sess, nil
	}
	var id string
	if securecookie.DecodeMulti(name, c.Value, &id, s.codecs...) != nil {
		return sess, nil
	}
	b, err := s.client.Get(r.Context(), s.prefix+id).Bytes()
	switch {
	case err == redis.Nil:
		return sess, nil
	case err != nil:
		return sess, fmt.Errorf("gorillaredis: loading session: %w", err)
	}
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&sess.Values); err != nil {
		return sess, fmt.Errorf("gorillaredis: decoding session: %w", err)
	}
	sess.ID, sess.IsNew = id, false
	return sess, nil
}

// Save writes the session's values to Redis with a TTL of its MaxAge and
// sets its cookie. A MaxAge below zero deletes the key and expires the
// cookie.
func (s *Store) Save(r *http.Request, w http.ResponseWriter, sess *sessions.Session) error {
	ctx := r.Context()
	if sess.Options.MaxAge < 0 {
		if sess.ID != "" {
			if err := s.client.Del(ctx, s.prefix+sess.ID).Err(); err != nil {
				return fmt.Errorf("gorillaredis: deleting session: %w", err)
			}
		}
		http.SetCookie(w, sessions.NewCookie(sess.Name(), "", sess.Options))
		return nil
	}
	if sess.ID == "" {
		sess.ID = newID()
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(sess.Values); err != nil {
		return fmt.Errorf("gorillaredis: encoding session: %w", err)
	}
	ttl := time.Duration(sess.Options.MaxAge) * time.Second
	if ttl == 0 {
		ttl = DefaultMaxAge * time.Second // a browser-session cookie still needs a key that expires
	}
	if err := s.client.Set(ctx, s.prefix+sess.ID, buf.Bytes(), ttl).Err(); err != nil {
		return fmt.Errorf("gorillaredis: saving session: %w", err)
	}
	v, err := securecookie.EncodeMulti(sess.Name(), sess.ID, s.codecs...)
	if err != nil {
		return fmt.Errorf("gorillaredis: encoding cookie: %w", err)
	}
	http.SetCookie(w, sessions.NewCookie(sess.Name(), v, sess.Options))
	return nil
}

// newID returns 32 random bytes in unpadded base32: the session's key.
func newID() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b)
}
