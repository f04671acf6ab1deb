package redistest

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestReadReply(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want any
	}{
		{"simple string", "+OK\r\n", "OK"},
		{"error", "-ERR bad\r\n", ReplyError("ERR bad")},
		{"integer", ":-42\r\n", int64(-42)},
		{"bulk string", "$5\r\nhe\r\nl\r\n", "he\r\nl"},
		{"empty bulk string", "$0\r\n\r\n", ""},
		{"null bulk string", "$-1\r\n", nil},
		{"null array", "*-1\r\n", nil},
		{"nested array", "*2\r\n:1\r\n*1\r\n$1\r\nx\r\n", []any{int64(1), []any{"x"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readReply(bufio.NewReader(strings.NewReader(tt.in)))
			if err != nil {
				t.Fatal(err)
			}
			if !equal(got, tt.want) {
				t.Errorf("readReply(%q) = %#v, want %#v", tt.in, got, tt.want)
			}
		})
	}
}

func TestReadReply_Malformed(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "+OK\n", "?x\r\n", "$abc\r\n", "$5\r\nab", "*x\r\n"} {
		if got, err := readReply(bufio.NewReader(strings.NewReader(in))); err == nil {
			t.Errorf("readReply(%q) = %#v, want an error", in, got)
		}
	}
}

func equal(a, b any) bool {
	as, aok := a.([]any)
	bs, bok := b.([]any)
	if aok != bok {
		return false
	}
	if !aok {
		return a == b
	}
	if len(as) != len(bs) {
		return false
	}
	for i := range as {
		if !equal(as[i], bs[i]) {
			return false
		}
	}
	return true
}

func TestParseInfo(t *testing.T) {
	t.Parallel()
	got := parseInfo("# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\r\n# Keyspace\r\ndb0:keys=1,expires=0\r\n")
	want := map[string]string{"role": "master", "connected_slaves": "2", "db0": "keys=1,expires=0"}
	if len(got) != len(want) {
		t.Fatalf("parseInfo = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("parseInfo[%q] = %q, want %q", k, got[k], v)
		}
	}
}

func TestServer_Lifecycle(t *testing.T) {
	t.Parallel()
	s := NewStandalone(t, "--requirepass", "secret", "--maxmemory", "1mb")

	mustDo(t, s, "OK", "SET", "k", "v")
	mustDo(t, s, "v", "GET", "k")
	mustDo(t, s, nil, "GET", "missing")
	mustDo(t, s, []any{"maxmemory", "1048576"}, "CONFIG", "GET", "maxmemory")
	_, err := s.Do("INCR", "k")
	var re ReplyError
	if !errors.As(err, &re) || re.Prefix() != "ERR" {
		t.Errorf("INCR on a string: err = %v, want an ERR reply", err)
	}
	if _, err := roundTrip(context.Background(), s.Addr, "", []string{"GET", "k"}); err == nil || !strings.HasPrefix(err.Error(), "NOAUTH") {
		t.Errorf("GET without AUTH: err = %v, want NOAUTH", err)
	}
	info, err := s.Info("server")
	if err != nil {
		t.Fatal(err)
	}
	if info["tcp_port"] != strconv.Itoa(s.Port) || info["redis_version"] == "" {
		t.Errorf("INFO server: tcp_port=%q redis_version=%q", info["tcp_port"], info["redis_version"])
	}

	t.Run("Pause", func(t *testing.T) {
		if err := s.Pause(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if _, err := s.DoContext(ctx, "PING"); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("PING while paused: err = %v, want a deadline error", err)
		}
		if err := s.Resume(); err != nil {
			t.Fatal(err)
		}
		mustDo(t, s, "PONG", "PING")
	})

	t.Run("Kill", func(t *testing.T) {
		pid := s.pid
		if err := s.Kill(); err != nil {
			t.Fatal(err)
		}
		assertGone(t, s.Addr, pid)
		if err := s.Kill(); err != nil {
			t.Errorf("second Kill: %v", err)
		}
	})

	t.Run("Restart", func(t *testing.T) {
		addr := s.Addr
		if err := s.Restart(); err != nil {
			t.Fatal(err)
		}
		if s.Addr != addr {
			t.Errorf("Addr after Restart = %s, want %s", s.Addr, addr)
		}
		// Same arguments: the password still applies, and without
		// persistence the data is gone.
		mustDo(t, s, nil, "GET", "k")
		mustDo(t, s, []any{"maxmemory", "1048576"}, "CONFIG", "GET", "maxmemory")
	})

	t.Run("Close", func(t *testing.T) {
		pid := s.pid
		s.Close()
		s.Close()
		assertGone(t, s.Addr, pid)
		if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
			t.Errorf("Dir %s still exists: %v", s.Dir, err)
		}
		if err := s.Restart(); err == nil {
			t.Error("Restart after Close succeeded")
		}
	})
}

func TestStartStandalone_BadArgs(t *testing.T) {
	t.Parallel()
	Require(t)
	s, err := StartStandalone("--no-such-option", "1")
	if err == nil {
		s.Close()
		t.Fatal("StartStandalone with a bad option succeeded")
	}
	// The log tail explains the failure.
	if !strings.Contains(err.Error(), "no-such-option") {
		t.Errorf("error does not quote the log: %v", err)
	}
}

func TestStart_PortTaken(t *testing.T) {
	t.Parallel()
	Require(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port
	attempts := 0
	s, err := start(launch{
		bin: "redis-server",
		args: func(dir string, port int) ([]string, error) {
			return serverArgs(dir, port), nil
		},
		port: func(bus bool) (int, error) {
			attempts++
			if attempts == 1 {
				return taken, nil
			}
			return freePort(bus)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Port == taken || attempts != 2 {
		t.Errorf("Port = %d after %d attempts, want a port other than %d after 2", s.Port, attempts, taken)
	}
	mustDo(t, s, "PONG", "PING")
}

func TestSentinel_Failover(t *testing.T) {
	t.Parallel()
	st := NewSentinel(t)
	if len(st.Replicas) != 2 || len(st.Sentinels) != 3 || len(st.SentinelAddrs()) != 3 {
		t.Fatalf("topology: %d replicas, %d sentinels", len(st.Replicas), len(st.Sentinels))
	}
	old, err := st.MasterAddr()
	if err != nil {
		t.Fatal(err)
	}
	if old != st.Master.Addr {
		t.Fatalf("MasterAddr = %s, want %s", old, st.Master.Addr)
	}
	mustDo(t, st.Master, "OK", "SET", "k", "v")

	if err := st.Failover(); err != nil {
		t.Fatal(err)
	}
	now, err := st.MasterAddr()
	if err != nil {
		t.Fatal(err)
	}
	if now == old || now != st.Master.Addr {
		t.Fatalf("after Failover: MasterAddr = %s, Master = %s, old master %s", now, st.Master.Addr, old)
	}
	// The promoted replica kept the data and now takes writes.
	mustDo(t, st.Master, "v", "GET", "k")
	mustDo(t, st.Master, "OK", "SET", "k", "w")

	servers := append(append([]*Server{st.Master}, st.Replicas...), st.Sentinels...)
	pids := make([]int, len(servers))
	for i, s := range servers {
		pids[i] = s.pid
	}
	st.Close()
	for i, s := range servers {
		assertGone(t, s.Addr, pids[i])
	}
}

func TestCluster(t *testing.T) {
	t.Parallel()
	c := NewCluster(t)
	if len(c.Nodes()) != 6 || len(c.Addrs()) != 6 || len(c.Masters) != 3 || len(c.Replicas) != 3 {
		t.Fatalf("topology: %d nodes, %d masters, %d replicas", len(c.Nodes()), len(c.Masters), len(c.Replicas))
	}
	for _, n := range c.Nodes() {
		reply, err := n.Do("CLUSTER", "INFO")
		if err != nil {
			t.Fatal(err)
		}
		info := parseInfo(reply.(string))
		if info["cluster_state"] != "ok" || info["cluster_slots_ok"] != "16384" {
			t.Errorf("%s: cluster_state:%s cluster_slots_ok:%s", n.Addr, info["cluster_state"], info["cluster_slots_ok"])
		}
	}

	// Keys land on the master that serves their slot.
	for _, key := range []string{"a", "b", "c", "user:42", "{tag}x"} {
		mustClusterDo(t, c, "OK", "SET", key, "v-"+key)
		mustClusterDo(t, c, "v-"+key, "GET", key)
		holders := 0
		for _, m := range c.Masters {
			reply, err := m.Do("GET", key)
			var re ReplyError
			switch {
			case err == nil && reply == "v-"+key:
				holders++
			case errors.As(err, &re) && re.Prefix() == "MOVED":
			default:
				t.Errorf("GET %s on %s = %v, %v", key, m.Addr, reply, err)
			}
		}
		if holders != 1 {
			t.Errorf("key %s is served by %d masters, want 1", key, holders)
		}
	}

	t.Run("RestartReplica", func(t *testing.T) {
		r := c.Replicas[0]
		if err := r.Kill(); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitOK(10 * time.Second); err != nil {
			t.Fatal(err)
		}
		if err := r.Restart(); err != nil {
			t.Fatal(err)
		}
		info, err := r.Info("replication")
		if err != nil {
			t.Fatal(err)
		}
		if info["role"] != "slave" || info["master_link_status"] != "up" {
			t.Errorf("restarted replica: role:%s master_link_status:%s", info["role"], info["master_link_status"])
		}
	})

	t.Run("FailoverAndRejoin", func(t *testing.T) {
		old := c.Masters[0]
		if err := old.Kill(); err != nil {
			t.Fatal(err)
		}
		// The old master's replica takes over once the others have
		// marked it as failed (cluster-node-timeout).
		err := poll(30*time.Second, "wait for a replica to take over", func() error {
			for _, r := range c.Replicas {
				info, err := r.Info("replication")
				if err != nil {
					return err
				}
				if info["role"] == "master" {
					return nil
				}
			}
			return errors.New("no replica is master")
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.WaitOK(30 * time.Second); err != nil {
			t.Fatal(err)
		}
		mustClusterDo(t, c, "v-a", "GET", "a")
		if err := old.Restart(); err != nil {
			t.Fatal(err)
		}
		info, err := old.Info("replication")
		if err != nil {
			t.Fatal(err)
		}
		if info["role"] != "slave" || info["master_link_status"] != "up" {
			t.Errorf("restarted old master: role:%s master_link_status:%s", info["role"], info["master_link_status"])
		}
	})

	t.Run("Close", func(t *testing.T) {
		nodes := c.Nodes()
		pids := make([]int, len(nodes))
		for i, n := range nodes {
			pids[i] = n.pid
		}
		c.Close()
		for i, n := range nodes {
			assertGone(t, n.Addr, pids[i])
			bus := net.JoinHostPort("127.0.0.1", strconv.Itoa(n.Port+busOffset))
			assertRefused(t, bus)
		}
	})
}

func mustDo(t *testing.T, s *Server, want any, args ...string) {
	t.Helper()
	got, err := s.Do(args...)
	if err != nil {
		t.Fatalf("%s on %s: %v", strings.Join(args, " "), s.Addr, err)
	}
	if !equal(got, want) {
		t.Fatalf("%s on %s = %#v, want %#v", strings.Join(args, " "), s.Addr, got, want)
	}
}

func mustClusterDo(t *testing.T, c *Cluster, want any, args ...string) {
	t.Helper()
	got, err := c.Do(args...)
	if err != nil {
		t.Fatalf("%s: %v", strings.Join(args, " "), err)
	}
	if !equal(got, want) {
		t.Fatalf("%s = %#v, want %#v", strings.Join(args, " "), got, want)
	}
}

// assertGone checks that process pid no longer exists and that nothing
// listens on addr.
func assertGone(t *testing.T, addr string, pid int) {
	t.Helper()
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); !os.IsNotExist(err) {
		t.Errorf("process %d (%s) still exists", pid, addr)
	}
	assertRefused(t, addr)
}

func assertRefused(t *testing.T, addr string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		conn.Close()
		t.Errorf("%s still accepts connections", addr)
	}
}
