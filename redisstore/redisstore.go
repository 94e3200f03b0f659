package redisstore

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-redis/redis_rate/v10"
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
	// WaitReplicas, when above 0, makes the writes that guard exactly-once
	// linking and deletion — a link's claim, and the record a link or a
	// delete leaves — wait until that many replicas have them (WAIT on the
	// write's own connection, in the same round trip), so that a failover
	// cannot lose them. A write that fewer replicas acknowledge within
	// WaitTimeout is reported as failed (ErrNotReplicated), although the
	// master has it: the Manager then retries or gives the link up, as for
	// any store failure, and a retry recognises the write that did happen.
	// Other writes (a new guest, its data, its expiry) do not wait. Default:
	// 0, no waiting.
	WaitReplicas int
	// WaitTimeout bounds WaitReplicas' wait. Default: 100 ms.
	WaitTimeout time.Duration
}

// ErrNotReplicated is returned for a write that fewer than
// Options.WaitReplicas replicas acknowledged within Options.WaitTimeout.
var ErrNotReplicated = errors.New("redisstore: write not acknowledged by enough replicas")

// Store is an anonymous.Store on Redis. Create it with New. It is safe for
// concurrent use. It does not own the client: the caller closes it.
type Store struct {
	client  redis.UniversalClient
	prefix  string
	rate    *redis_rate.Limiter
	wait    int   // Options.WaitReplicas
	waitFor int64 // Options.WaitTimeout, in ms
}

var (
	_ anonymous.Store   = (*Store)(nil)
	_ anonymous.Limiter = (*Store)(nil)
)

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
	if o.WaitReplicas < 0 || o.WaitTimeout < 0 {
		return nil, errors.New("redisstore: negative WaitReplicas or WaitTimeout")
	}
	return &Store{
		client: client, prefix: p, rate: redis_rate.NewLimiter(client),
		wait: o.WaitReplicas, waitFor: max(cmp.Or(o.WaitTimeout, 100*time.Millisecond).Milliseconds(), 1),
	}, nil
}

// key is the guest's record key. Its hash tag {id} keeps a guest on one
// Cluster slot whatever else is ever stored beside it.
func (s *Store) key(id string) string { return s.prefix + "{" + id + "}" }

// validID rejects ids that would not give one shared hash tag: empty ones
// and ones with braces. No guest can have such an id, so reads answer
// ErrNotFound.
func validID(id string) bool {
	return id != "" && !strings.ContainsAny(id, "{}")
}

// pxat is an absolute expiry in Unix milliseconds for PXAT. It is never
// below 1 (Redis rejects 0): an expiry in the past makes Redis drop the key
// at once, so no key ever lives without an expiry.
func pxat(t time.Time) int64 {
	return max(t.UnixMilli(), 1)
}

var errNilRecord = errors.New("redisstore: nil record or invalid id")

// Create stores rec with SET NX PXAT: the value and its absolute expiry in
// one atomic command.
func (s *Store) Create(ctx context.Context, rec *anonymous.Record) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redisstore: create: %w", err)
	}
	if rec == nil || !validID(rec.User.ID) {
		return errNilRecord
	}
	exp := time.UnixMilli(pxat(rec.Session.ExpiresAt))
	err := s.client.SetArgs(ctx, s.key(rec.User.ID), encode(rec, 1), redis.SetArgs{Mode: "NX", ExpireAt: exp}).Err()
	switch {
	case errors.Is(err, redis.Nil):
		return anonymous.ErrExists
	case err != nil:
		return failed(ctx, "create", rec.User.ID, err)
	}
	return nil
}

// Get loads the record with one GET.
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

// Results of the update script.
const (
	resOK       = 0
	resNotFound = 1
	resConflict = 2
)

// updateScript replaces the record if its version is still ARGV[1], the
// eight bytes at offset offVersion. KEYS: record. ARGV: the version read,
// the new value, its expiry in Unix ms.
var (
	updateScriptSource = fmt.Sprintf(`
local v = redis.call('GETRANGE', KEYS[1], %d, %d)
if v == '' then return %d end
if v ~= ARGV[1] then return %d end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
return %d`, offVersion, offVersion+7, resNotFound, resConflict, resOK)
	updateScript = redis.NewScript(updateScriptSource)
)

// Update replaces the record in one script call (EVALSHA, falling back to
// EVAL once per server), if its version is rec.Version.
func (s *Store) Update(ctx context.Context, rec *anonymous.Record) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redisstore: update: %w", err)
	}
	if rec == nil || !validID(rec.User.ID) {
		return errNilRecord
	}
	var read [8]byte
	binary.BigEndian.PutUint64(read[:], rec.Version)
	id := rec.User.ID
	keys, args := []string{s.key(id)}, []any{read[:], encode(rec, rec.Version+1), pxat(rec.Session.ExpiresAt)}
	if s.wait > 0 && (rec.ClaimOwner != "" || rec.Deleted || rec.LinkedTo != "") {
		return s.updateAndWait(ctx, id, keys, args)
	}
	n, err := updateScript.Run(ctx, s.client, keys, args...).Int()
	return s.updated(ctx, id, n, err)
}

// updated maps the update script's answer to the Store's.
func (s *Store) updated(ctx context.Context, id string, n int, err error) error {
	switch {
	case err != nil:
		return failed(ctx, "update", id, err)
	case n == resNotFound:
		return anonymous.ErrNotFound
	case n == resConflict:
		return anonymous.ErrConflict
	}
	return nil
}

// updateAndWait runs the update script and WAIT on one connection of the
// key's master, pipelined: one round trip, plus the replicas' time.
func (s *Store) updateAndWait(ctx context.Context, id string, keys []string, args []any) error {
	node := redis.UniversalClient(s.client)
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		m, err := cc.MasterForKey(ctx, keys[0])
		if err != nil {
			return failed(ctx, "update", id, err)
		}
		node = m
	}
	var script *redis.Cmd
	var acked *redis.Cmd
	_, err := node.Pipelined(ctx, func(p redis.Pipeliner) error {
		script = p.Eval(ctx, updateScriptSource, keys, args...)
		acked = p.Do(ctx, "WAIT", s.wait, s.waitFor)
		return nil
	})
	if err != nil && script.Err() != nil {
		return failed(ctx, "update", id, script.Err())
	}
	n, _ := script.Int()
	if err := s.updated(ctx, id, n, nil); err != nil {
		return err // nothing written, nothing to wait for
	}
	if got, err := acked.Int(); err != nil || got < s.wait {
		return failed(ctx, "update", id, fmt.Errorf("%w: %d of %d replicas (%v)", ErrNotReplicated, got, s.wait, err))
	}
	return nil
}

// Allow takes one guest from client's budget in Redis, so that every
// instance of the application shares it: GCRA in one script call
// (go-redis/redis_rate), on the key "rate:{prefix}budget:{client}", which
// expires once the budget is full again. The Manager uses it by default.
func (s *Store) Allow(ctx context.Context, client string, b anonymous.Budget) (time.Duration, error) {
	res, err := s.rate.Allow(ctx, s.prefix+"budget:"+client, redis_rate.Limit{Rate: b.Rate, Burst: b.Burst, Period: b.Period})
	if err != nil {
		return 0, failed(ctx, "budget", client, err)
	}
	if res.Allowed == 0 {
		return max(res.RetryAfter, time.Millisecond), nil
	}
	return 0, nil
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
