package anonymous

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/mail"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/oklog/ulid/v2"
)

// A guest's identity: its id, generated email and name, its session's
// token, and the client's address and User-Agent kept with the session.
// newGuest generates a guest for r: identity per the spec, a fresh session
// with a random token, the client's address and User-Agent. It does not
// store it. The record's Session.Token is empty, as a store wants it: the
// token is returned apart. The rest of the guest's text (ids, generated
// email, address, User-Agent) is one string: a new visitor costs few
// allocations.
func (m *Manager) newGuest(r *http.Request, now time.Time) (*Record, string, error) {
	ctx := r.Context()
	now = now.UTC().Truncate(time.Millisecond)
	// One read of crypto/rand for the two ids' entropy and the token's secret.
	var ent [2*10 + 32]byte
	rand.Read(ent[:])
	var token [tokenSize]byte
	var sid [ulid.EncodedSize]byte
	ulidText(token[:ulid.EncodedSize], now, ent[:10])
	ulidText(sid[:], now, ent[10:20])
	token[ulid.EncodedSize] = '.'
	base64.RawURLEncoding.Encode(token[ulid.EncodedSize+1:], ent[20:])
	id := token[:ulid.EncodedSize]

	email := ""
	if m.opts.GenerateRandomEmail != nil {
		var err error
		if email, err = m.randomEmail(ctx); err != nil {
			return nil, "", err
		}
	}
	name := defaultName
	if m.opts.GenerateName != nil {
		if n := m.opts.GenerateName(ctx); n != "" {
			name = n
		}
	}
	var ipBuf [len("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255")]byte
	ip := m.clientAddr(r).AppendTo(ipBuf[:0])
	ua := userAgentOf(r)

	// The token is a string of its own: the rest outlives the request in
	// whatever keeps the guest's id, and must not keep the secret with it.
	var b strings.Builder
	b.Grow(len(id) + len(sid) + len(m.emailPrefix) + len(id) + len(m.emailSuffix) + len(ip) + len(ua))
	b.Write(id)
	b.Write(sid[:])
	b.Write(ip)
	b.WriteString(ua)
	if email == "" {
		b.WriteString(m.emailPrefix)
		for _, c := range id {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			b.WriteByte(c)
		}
		b.WriteString(m.emailSuffix)
	}
	text := b.String()
	cut := func(n int) string {
		s := text[:n]
		text = text[n:]
		return s
	}
	uid, sidText, ipText, uaText := cut(len(id)), cut(len(sid)), cut(len(ip)), cut(len(ua))
	if email == "" {
		email = text
	}
	if len(name) > maxField || len(email) > maxField {
		return nil, "", fmt.Errorf("anonymous: generated name or email is over %d bytes", maxField)
	}
	return &Record{
		User: User{ID: uid, Email: email, Name: name, CreatedAt: now, UpdatedAt: now, IsAnonymous: true},
		Session: Session{
			ID: sidText, UserID: uid, ExpiresAt: now.Add(m.opts.Lifetime), CreatedAt: now, UpdatedAt: now,
			IPAddress: ipText, UserAgent: uaText,
		},
		TokenHash: sha256.Sum256(token[:]),
	}, string(token[:]), nil
}

// randomEmail is GenerateRandomEmail's address, checked and in lower case.
func (m *Manager) randomEmail(ctx context.Context) (string, error) {
	email, err := m.opts.GenerateRandomEmail(ctx)
	if err != nil {
		return "", fmt.Errorf("anonymous: GenerateRandomEmail: %w", err)
	}
	if a, err := mail.ParseAddress(email); err != nil || a.Address != email || a.Name != "" {
		return "", fmt.Errorf("%w: %q", ErrInvalidEmail, email)
	}
	return strings.ToLower(email), nil
}

// emailAffixes are what a generated email puts before and after the guest's
// id in lower case: temp@<id>.com, or temp-<id>@<EmailDomainName>.
func emailAffixes(o *Options) (prefix, suffix string) {
	if o.EmailDomainName != "" {
		return "temp-", "@" + strings.ToLower(o.EmailDomainName)
	}
	return defaultEmailPrefix, defaultEmailSuffix
}

// A guest's name and email when the Options generate none: "Anonymous" and
// temp@{id in lower case}.com.
const (
	defaultName                            = "Anonymous"
	defaultEmailPrefix, defaultEmailSuffix = "temp@", ".com"
)

// ulidText writes the text of a ULID with the given time and 10 bytes of
// entropy, from crypto/rand, into dst: ids are unique under concurrency and
// cannot be predicted (unlike ulid.Make's).
func ulidText(dst []byte, now time.Time, entropy []byte) {
	var u ulid.ULID
	_ = u.SetTime(ulid.Timestamp(now)) // fails only after the year 10889
	_ = u.SetEntropy(entropy)          // fails only for a length other than 10
	_ = u.MarshalTextTo(dst)           // fails only for a dst shorter than 26
}

// A session token is the guest id, a dot, and 32 secret bytes in unpadded
// base64url: random, or for a guest stored from its first-visit cookie, the
// keyed HMAC of that cookie's token (firstvisit.go). The id prefix lets a
// bearer token find its guest in one store round trip.

// tokenSize is a token's length.
const tokenSize = ulid.EncodedSize + 1 + 43

// tokenID returns the guest id a token names, or "" for a malformed token.
func tokenID(token string) string {
	id, _, ok := strings.Cut(token, ".")
	if !ok || len(token) != tokenSize || len(id) != ulid.EncodedSize {
		return ""
	}
	if _, err := ulid.ParseStrict(id); err != nil {
		return ""
	}
	return id
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return b
}

// maxUserAgent bounds the User-Agent kept with a session: a client chooses
// it, and every stored byte costs the store memory for the guest's life.
const maxUserAgent = 512

// userAgent is the request's User-Agent, cut to maxUserAgent bytes. The
// result is a copy, never a slice of the header: a store keeps it for the
// guest's life, and must not keep the request's memory with it.
func userAgent(r *http.Request) string {
	return strings.Clone(userAgentOf(r))
}

// userAgentOf is the request's User-Agent cut to maxUserAgent bytes, with
// any invalid UTF-8 dropped: a slice of the header unless it had some, to
// be copied before it is kept.
func userAgentOf(r *http.Request) string {
	ua := r.UserAgent()
	if len(ua) > maxUserAgent {
		ua = ua[:maxUserAgent]
	}
	if !utf8.ValidString(ua) {
		ua = strings.ToValidUTF8(ua, "")
	}
	return ua
}

// clientAddr is the address of r's client as Budget.Client names it (by
// default, RemoteAddr's: proxies' headers are the application's to
// interpret), IPv4-mapped addresses unmapped; the zero Addr when it names
// none. The budget charges it, the session records it, and the siblings of
// a first visit share it.
func (m *Manager) clientAddr(r *http.Request) netip.Addr {
	return m.opts.Budget.Client(r).Unmap().WithZone("")
}

// clientIP is clientAddr(r) as the session records it: "" for none.
func (m *Manager) clientIP(r *http.Request) string {
	return string(m.clientAddr(r).AppendTo(nil))
}
