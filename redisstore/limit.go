package redisstore

import (
	"context"
	"strings"
	"time"

	"github.com/guestpass/anonymous"
	"github.com/redis/go-redis/v9"
)

// The budgets (anonymous.Budget) live in Redis too, so that every instance
// of the application shares them: the generic cell rate algorithm (GCRA),
// as the Manager's in-memory limiter runs it. A budget is one key holding
// its theoretical arrival time in Unix microseconds (the instant its next
// guest is due, at one guest every Period/Rate), expiring once the budget
// is full again. A guest may be stored while that instant is less than
// Burst guests ahead of the server's clock.
//
// One script takes a guest from every level of a client, or from none: the
// keys are "{prefix}budget:{tag}:{charge key}", where the tag is the
// coarsest level's key ("site" when there is a site-wide level), so that
// they share one Cluster slot, and the store's prefix covers them.

// limitScriptSource takes (ARGV[1] "take") or refunds ("refund") a guest
// of every key. ARGV[2i] and ARGV[2i+1] are key i's emission interval in
// microseconds and its burst. It returns 0, or the microseconds until
// every key has a guest again (nothing taken).
const limitScriptSource = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function set(key, tat)
  redis.call('SET', key, string.format('%.0f', tat), 'PX', math.max(math.ceil((tat - now) / 1000), 1))
end
if ARGV[1] == 'refund' then
  for i = 1, #KEYS do
    local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
    if tat > now then set(KEYS[i], math.max(tat - tonumber(ARGV[2*i]), now)) end
  end
  return 0
end
local wait, tats = 0, {}
for i = 1, #KEYS do
  local em, burst = tonumber(ARGV[2*i]), tonumber(ARGV[2*i+1])
  local tat = math.max(tonumber(redis.call('GET', KEYS[i]) or '0'), now)
  tats[i] = tat + em
  wait = math.max(wait, tats[i] - burst * em - now)
end
if wait > 0 then return math.ceil(wait) end
for i = 1, #KEYS do set(KEYS[i], tats[i]) end
return 0`

var limitScript = redis.NewScript(limitScriptSource)

var _ anonymous.Limiter = (*Store)(nil)

// Take takes a guest from every charge's budget, or from none, in one
// script call. The Manager uses it by default.
func (s *Store) Take(ctx context.Context, charges []anonymous.Charge) (time.Duration, error) {
	us, err := s.limit(ctx, "take", charges)
	if err != nil || us <= 0 {
		return 0, err
	}
	return max(time.Duration(us)*time.Microsecond, time.Millisecond), nil
}

// Refund gives back a guest Take took from every charge's budget.
func (s *Store) Refund(ctx context.Context, charges []anonymous.Charge) error {
	_, err := s.limit(ctx, "refund", charges)
	return err
}

func (s *Store) limit(ctx context.Context, op string, charges []anonymous.Charge) (int64, error) {
	if len(charges) == 0 {
		return 0, nil
	}
	tag := charges[len(charges)-1].Key
	for _, c := range charges {
		if c.Key == "site" {
			tag = "site"
		}
	}
	keys := make([]string, len(charges))
	args := make([]any, 1, 1+2*len(charges))
	args[0] = op
	var b strings.Builder
	for i, c := range charges {
		b.Reset()
		b.WriteString(s.prefix)
		b.WriteString("budget:{")
		b.WriteString(tag)
		b.WriteString("}:")
		b.WriteString(c.Key)
		keys[i] = b.String()
		args = append(args, (c.Level.Period / time.Duration(c.Level.Rate)).Microseconds(), c.Level.Burst)
	}
	n, err := limitScript.Run(ctx, s.client, keys, args...).Int64()
	if err != nil {
		return 0, failed(ctx, "budget "+op, charges[0].Key, err)
	}
	return n, nil
}
