package redisstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/redis/go-redis/v9"
)

// DefaultPrefix is the key prefix when Options.Prefix is empty.
const DefaultPrefix = "anon:"

// Options configures a Store. The zero value is a working configuration.
type Options struct {
	// Prefix starts every key the store writes, so several applications
	// (or tests) can share a database. It must not contain '{' or '}',
	// which would change the keys' hash tag. Default: DefaultPrefix
	// ("anon:").
	Prefix string
}

// Store is an anonymous.Store on Redis. Create it with New. It is safe for
// concurrent use. It does not own the client: the caller closes it.
type Store struct {
	client redis.UniversalClient
	prefix string
}

var _ anonymous.Store = (*Store)(nil)

// New returns a Store on client, which may be a *redis.Client (a single
// node), a Sentinel failover client or a *redis.ClusterClient. Pass at most
// one Options; without one, or with its zero value, the defaults apply. It
// returns an error for a nil client, more than one Options or a bad
// Options.Prefix. The caller keeps owning client and closes it after the
// last use of the Store.
func New(client redis.UniversalClient, opts ...Options) (*Store, error) {
	if client == nil {
		return nil, errors.New("redisstore: nil client")
	}
	if len(opts) > 1 {
		return nil, errors.New("redisstore: New takes at most one Options")
	}
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	p := o.Prefix
	if p == "" {
		p = DefaultPrefix
	}
	if strings.ContainsAny(p, "{}") {
		return nil, fmt.Errorf("redisstore: Prefix %q contains a brace, which would break the keys' hash tag", p)
	}
	return &Store{client: client, prefix: p}, nil
}

// key is the guest's record key; claimKey its lease. Both share the hash
// tag {id}, so a script may touch both on a Cluster.
func (s *Store) key(id string) string      { return s.prefix + "{" + id + "}" }
func (s *Store) claimKey(id string) string { return s.prefix + "{" + id + "}:claim" }

// validID rejects ids that would not give one shared hash tag: empty ones
// and ones with braces. No guest can have such an id, so reads answer
// ErrNotFound.
func validID(id string) bool {
	return id != "" && !strings.ContainsAny(id, "{}")
}

// pxat is an absolute expiry in Unix milliseconds for PXAT and PEXPIREAT.
// It is never below 1 (Redis rejects 0): an expiry in the past makes Redis
// drop the key at once, so no key ever lives without an expiry.
func pxat(t time.Time) int64 {
	return max(t.UnixMilli(), 1)
}

// Create stores rec with SET NX PXAT: the value and its absolute expiry in
// one atomic command.
func (s *Store) Create(ctx context.Context, rec *anonymous.Record) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redisstore: create: %w", err)
	}
	if rec == nil || !validID(rec.User.ID) {
		return errors.New("redisstore: create: nil record or invalid id")
	}
	v, err := encode(rec)
	if err != nil {
		return err
	}
	exp := time.UnixMilli(pxat(rec.Session.ExpiresAt))
	err = s.client.SetArgs(ctx, s.key(rec.User.ID), v, redis.SetArgs{Mode: "NX", ExpireAt: exp}).Err()
	switch {
	case errors.Is(err, redis.Nil):
		return anonymous.ErrExists
	case err != nil:
		return failed(ctx, "create", rec.User.ID, err)
	}
	return nil
}

// Get loads the guest with one GET.
func (s *Store) Get(ctx context.Context, id string) (*anonymous.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("redisstore: get: %w", err)
	}
	if !validID(id) {
		return nil, anonymous.ErrNotFound
	}
	v, err := s.client.Get(ctx, s.key(id)).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, anonymous.ErrNotFound
	case err != nil:
		return nil, failed(ctx, "get", id, err)
	case len(v) == 1 && v[0] == stateDeleted:
		return nil, anonymous.ErrNotFound
	}
	rec, err := decode(id, v)
	if err != nil {
		return nil, fmt.Errorf("%w: guest %s", err, id)
	}
	// Redis keeps a key through the millisecond of its expiry; the record's
	// own expiry is exact.
	if !time.Now().Before(rec.Session.ExpiresAt) {
		return nil, anonymous.ErrNotFound
	}
	return rec, nil
}

// Results of the scripts.
const (
	resOK       = 0
	resNotFound = 1
	resClaimed  = 2
)

// touchScript patches ExpiresAt and UpdatedAt in place and moves the key's
// expiry. KEYS: record. ARGV: the two timestamps (16 bytes), expiry in ms.
var touchScript = script(`
if redis.call('GETRANGE', KEYS[1], 0, 0) ~= '{{live}}' then return 1 end
redis.call('SETRANGE', KEYS[1], {{expires}}, ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 0`)

// Touch moves the guest's expiry, in its record and on its key, atomically.
func (s *Store) Touch(ctx context.Context, id string, expiresAt, now time.Time) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redisstore: touch: %w", err)
	}
	if !validID(id) {
		return anonymous.ErrNotFound
	}
	var ts [16]byte
	binary.BigEndian.PutUint64(ts[:8], uint64(nanos(expiresAt)))
	binary.BigEndian.PutUint64(ts[8:], uint64(nanos(now)))
	return s.run(ctx, touchScript, "touch", id, []string{s.key(id)}, ts[:], pxat(expiresAt))
}

// claimScript takes the lease. KEYS: record, lease. ARGV: owner, until in ms.
var claimScript = script(`
if redis.call('GETRANGE', KEYS[1], 0, 0) ~= '{{live}}' then return 1 end
local c = redis.call('GET', KEYS[2])
if c and c ~= ARGV[1] then return 2 end
redis.call('SET', KEYS[2], ARGV[1], 'PXAT', ARGV[2])
return 0`)

// Claim takes the guest's link lease, a key of its own that expires at
// until.
func (s *Store) Claim(ctx context.Context, id, owner string, until time.Time) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redisstore: claim: %w", err)
	}
	if !validID(id) {
		return anonymous.ErrNotFound
	}
	return s.run(ctx, claimScript, "claim", id, []string{s.key(id), s.claimKey(id)}, owner, pxat(until))
}

// releaseScript drops the lease if owner holds it. KEYS: lease. ARGV: owner.
var releaseScript = script(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0`)

// Release drops owner's lease on the guest.
func (s *Store) Release(ctx context.Context, id, owner string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redisstore: release: %w", err)
	}
	if !validID(id) {
		return nil
	}
	return s.run(ctx, releaseScript, "release", id, []string{s.claimKey(id)}, owner)
}

// deleteScript replaces the record with a tombstone that keeps the record's
// expiry, and drops the lease. KEYS: record, lease.
var deleteScript = script(`
redis.call('DEL', KEYS[2])
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('SET', KEYS[1], '{{deleted}}', 'KEEPTTL') end
return 0`)

// Delete removes the guest and its lease. A tombstone of one byte keeps the
// id reserved until the guest's expiry.
func (s *Store) Delete(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redisstore: delete: %w", err)
	}
	if !validID(id) {
		return nil
	}
	return s.run(ctx, deleteScript, "delete", id, []string{s.key(id), s.claimKey(id)})
}

// revokeScript marks the record revoked, zeroes its token hash, sets
// LinkedTo, keeps its expiry, and drops the lease. KEYS: record, lease.
// ARGV: linkedTo.
var revokeScript = script(`
local v = redis.call('GET', KEYS[1])
if not v then return 1 end
if string.sub(v, 1, 1) ~= '{{live}}' then return 1 end
local a, b, c, d = string.byte(v, {{tail}} + 1, {{tail}} + 4)
local tail = ((a * 256 + b) * 256 + c) * 256 + d
redis.call('SET', KEYS[1], '{{revoked}}' .. string.sub(v, 2, {{hash}}) .. string.rep('\0', 32) .. string.sub(v, {{hash}} + 33, tail) .. ARGV[1], 'KEEPTTL')
redis.call('DEL', KEYS[2])
return 0`)

// Revoke ends the guest's session for good and records whom it was linked
// to.
func (s *Store) Revoke(ctx context.Context, id, linkedTo string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redisstore: revoke: %w", err)
	}
	if !validID(id) {
		return anonymous.ErrNotFound
	}
	return s.run(ctx, revokeScript, "revoke", id, []string{s.key(id), s.claimKey(id)}, linkedTo)
}

// run runs a script (EVALSHA, falling back to EVAL once per server) and maps
// its result to the package's errors.
func (s *Store) run(ctx context.Context, sc *redis.Script, op, id string, keys []string, args ...any) error {
	n, err := sc.Run(ctx, s.client, keys, args...).Int()
	if err != nil {
		return failed(ctx, op, id, err)
	}
	switch n {
	case resOK:
		return nil
	case resNotFound:
		return anonymous.ErrNotFound
	case resClaimed:
		return anonymous.ErrClaimed
	}
	return fmt.Errorf("redisstore: %s %s: unexpected script result %d", op, id, n)
}

// failed wraps a failed call's error, and the context's too when it is done
// (go-redis reports a deadline as a network timeout), so that
// errors.Is(err, context.DeadlineExceeded) holds for a call the caller's
// deadline cut short.
func failed(ctx context.Context, op, id string, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("redisstore: %s %s: %w: %w", op, id, cerr, err)
	}
	return fmt.Errorf("redisstore: %s %s: %w", op, id, err)
}
