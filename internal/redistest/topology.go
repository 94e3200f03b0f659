package redistest

// Failover tests start replicated topologies of their own with the scripts
// in scripts/, kill, cut off and promote their servers, and take seconds:
// they run only with ANON_FAILOVER=1. Each topology keeps its state file
// and folders in the test's t.TempDir(), so it never touches the Cluster
// that REDIS_CLUSTER_ADDRS names, and it is stopped when the test ends.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// FailoverEnabled reports whether ANON_FAILOVER=1.
func FailoverEnabled() bool { return os.Getenv("ANON_FAILOVER") == "1" }

// RequireFailover skips t unless ANON_FAILOVER=1.
func RequireFailover(t testing.TB) {
	t.Helper()
	if !FailoverEnabled() {
		t.Skip("SKIPPED: a failover test starts its own Redis servers, kills some of them and takes seconds; set ANON_FAILOVER=1 to run it")
	}
}

// scriptPath is scripts/name at the root of the module.
func scriptPath(t testing.TB, name string) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("redistest: cannot locate the module's scripts")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "scripts", name)
}

// runScript runs scripts/name with args and env added to the test's
// environment, logs what it said on standard error, and returns its
// standard output.
func runScript(t testing.TB, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{scriptPath(t, name)}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("redistest: %s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	if msg := strings.TrimSpace(stderr.String()); msg != "" {
		t.Logf("%s %s: %s", name, strings.Join(args, " "), msg)
	}
	return stdout.String()
}

// startScript runs `name start args...` with its state and folders in a
// fresh temporary folder and its ports from base, registers `name stop`
// for the end of the test, and returns the NAME=VALUE lines it printed.
func startScript(t testing.TB, name, stateVar, baseVar string, base int, args ...string) map[string]string {
	t.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("redistest: %s not found (Debian: apt-get install redis-server redis-tools)", bin)
		}
	}
	dir := t.TempDir()
	env := []string{
		stateVar + "=" + filepath.Join(dir, "state.env"),
		baseVar + "=" + strconv.Itoa(base),
		"TMPDIR=" + dir, // the script's folder of logs, pid and data files
	}
	t.Cleanup(func() {
		if t.Failed() {
			logTails(t, dir)
		}
		runScript(t, env, name, "stop")
	})
	start := time.Now()
	out := runScript(t, env, name, append([]string{"start"}, args...)...)
	vars := map[string]string{}
	for line := range strings.Lines(out) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			vars[k] = v
		}
	}
	t.Logf("%s: %v", strings.Join(append([]string{name, "start"}, args...), " "), time.Since(start).Round(time.Millisecond))
	return vars
}

// logTails logs the last lines of each server's log under dir, for a test
// that failed.
func logTails(t testing.TB, dir string) {
	logs, _ := filepath.Glob(filepath.Join(dir, "*", "*.log"))
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		t.Logf("%s (last lines):\n%s", filepath.Base(l), strings.Join(lines[max(len(lines)-12, 0):], "\n"))
	}
}

// Cluster is a Redis Cluster of one test's own.
type Cluster struct {
	// Addrs are all its nodes, the three masters first.
	Addrs []string
	// Masters are its masters as started.
	Masters []string
}

// StartCluster starts a Cluster of three masters with replicas replicas
// each (scripts/redis-cluster.sh start --replicas), on free loopback ports
// from base upward, and stops it when the test ends.
func StartCluster(t testing.TB, base, replicas int) *Cluster {
	t.Helper()
	vars := startScript(t, "redis-cluster.sh", "REDIS_CLUSTER_STATE", "REDIS_CLUSTER_BASE_PORT", base,
		"--replicas", strconv.Itoa(replicas))
	addrs := strings.Split(vars["REDIS_CLUSTER_ADDRS"], ",")
	if len(addrs) != 3*(1+replicas) {
		t.Fatalf("redistest: redis-cluster.sh printed %q", vars)
	}
	return &Cluster{Addrs: addrs, Masters: addrs[:3]}
}

// NodeTimeout returns cluster-node-timeout, how long the Cluster waits
// before it takes a silent node for failed, as its first node has it.
func (c *Cluster) NodeTimeout(ctx context.Context) (time.Duration, error) {
	n := redis.NewClient(&redis.Options{Addr: c.Addrs[0], DialTimeout: time.Second})
	defer n.Close()
	v, err := n.ConfigGet(ctx, "cluster-node-timeout").Result()
	if err != nil {
		return 0, err
	}
	ms, err := strconv.Atoi(v["cluster-node-timeout"])
	return time.Duration(ms) * time.Millisecond, err
}

// SetNodeTimeout sets cluster-node-timeout on every node that answers: a
// test lengthens it while it wants no failover, since a loaded machine can
// stall a node past a short one.
func (c *Cluster) SetNodeTimeout(ctx context.Context, d time.Duration) error {
	for _, a := range c.Addrs {
		n := redis.NewClient(&redis.Options{Addr: a, DialTimeout: time.Second, MaxRetries: -1})
		err := n.ConfigSet(ctx, "cluster-node-timeout", strconv.FormatInt(d.Milliseconds(), 10)).Err()
		n.Close()
		var op *net.OpError
		if err != nil && !(errors.As(err, &op) && op.Op == "dial") {
			return fmt.Errorf("%s: %w", a, err)
		}
	}
	return nil
}

// Node returns a client of the one server at addr, without Cluster
// redirections, closed when the test ends.
func Node(t testing.TB, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{
		Addr: addr, DialTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: time.Second,
		MaxRetries: -1, DialerRetries: 1,
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// Info returns the fields of INFO section on the server c.
func Info(ctx context.Context, c *redis.Client, section string) (map[string]string, error) {
	s, err := c.Info(ctx, section).Result()
	if err != nil {
		return nil, err
	}
	f := map[string]string{}
	for line := range strings.SplitSeq(s, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			f[k] = v
		}
	}
	return f, nil
}

// Role is the server's role, "master" or "slave", "" when it does not answer.
func Role(ctx context.Context, c *redis.Client) string {
	f, _ := Info(ctx, c, "replication")
	return f["role"]
}

// ReplicaAddrs returns the replicas connected to the master c, as it lists
// them (slaveN lines of INFO replication).
func ReplicaAddrs(ctx context.Context, c *redis.Client) ([]string, error) {
	f, err := Info(ctx, c, "replication")
	if err != nil {
		return nil, err
	}
	var addrs []string
	for i := 0; ; i++ {
		v, ok := f["slave"+strconv.Itoa(i)]
		if !ok {
			return addrs, nil
		}
		r := fields(v)
		addrs = append(addrs, net.JoinHostPort(r["ip"], r["port"]))
	}
}

// fields parses "k=v,k=v".
func fields(v string) map[string]string {
	f := map[string]string{}
	for kv := range strings.SplitSeq(v, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			f[k] = v
		}
	}
	return f
}

// Poll calls ok every 50 ms until it returns nil, and fails the test with
// its last error after timeout.
func Poll(t testing.TB, timeout time.Duration, what string, ok func(context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := ok(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: %s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitSynced waits until the master c has want replicas online, each at
// the master's replication offset: every write the master has, they have.
func WaitSynced(t testing.TB, c *redis.Client, want int) {
	t.Helper()
	Poll(t, 15*time.Second, "replicas of "+c.Options().Addr+" in sync", func(ctx context.Context) error {
		f, err := Info(ctx, c, "replication")
		if err != nil {
			return err
		}
		n := 0
		for i := 0; ; i++ {
			v, ok := f["slave"+strconv.Itoa(i)]
			if !ok {
				break
			}
			if r := fields(v); r["state"] == "online" && r["offset"] == f["master_repl_offset"] {
				n++
			}
		}
		if n < want {
			return fmt.Errorf("%d of %d replicas online at offset %s: %v", n, want, f["master_repl_offset"], f)
		}
		return nil
	})
}

// PID returns the pid of the redis-server at addr (process_id in INFO
// server), checked to be a redis-server process of this machine.
func PID(t testing.TB, c *redis.Client) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f, err := Info(ctx, c, "server")
	if err != nil {
		t.Fatalf("redistest: INFO server on %s: %v", c.Options().Addr, err)
	}
	pid, err := strconv.Atoi(f["process_id"])
	if err != nil {
		t.Fatalf("redistest: process_id of %s: %q", c.Options().Addr, f["process_id"])
	}
	comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil || !strings.HasPrefix(string(comm), "redis-se") {
		t.Fatalf("redistest: pid %d of %s is not a redis-server here (%q, %v)", pid, c.Options().Addr, comm, err)
	}
	return pid
}

// Kill sends SIGKILL to pid, a server PID returned: it dies at once, with
// whatever it has not replicated yet. It is safe to call from any
// goroutine.
func Kill(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

// WaitDown waits until nothing accepts connections at addr any more.
func WaitDown(t testing.TB, addr string) {
	t.Helper()
	Poll(t, 10*time.Second, addr+" down", func(context.Context) error {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return nil
		}
		c.Close()
		return errors.New("still accepting connections")
	})
}

// CutOff stops the replica from replicating: it drops its link to its
// master and cannot make a new one (it offers a password the master does
// not want) until Reconnect. Unlike a stopped process, whose kernel keeps
// receiving the replication stream, a cut-off replica gets none of the
// master's later writes: if it is promoted, they are lost. CutOff returns
// once the master no longer lists the replica; it may be called from any
// goroutine.
func CutOff(ctx context.Context, master, replica *redis.Client) error {
	addr := replica.Options().Addr
	if err := replica.ConfigSet(ctx, "masterauth", "no-such-password").Err(); err != nil {
		return fmt.Errorf("cutting off %s: %w", addr, err)
	}
	if err := replica.ClientKillByFilter(ctx, "TYPE", "master").Err(); err != nil {
		return fmt.Errorf("cutting off %s: %w", addr, err)
	}
	for {
		listed, err := ReplicaAddrs(ctx, master)
		if err != nil {
			return fmt.Errorf("cutting off %s: %w", addr, err)
		}
		f, err := Info(ctx, replica, "replication")
		if err != nil {
			return fmt.Errorf("cutting off %s: %w", addr, err)
		}
		if !slices.Contains(listed, addr) && f["master_link_status"] == "down" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cutting off %s: %w", addr, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Reconnect lets a replica that CutOff cut off replicate again.
func Reconnect(ctx context.Context, replica *redis.Client) error {
	return replica.ConfigSet(ctx, "masterauth", "").Err()
}
