package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// redisServer is a redis-server started on a free loopback port for the
// length of one comparison run.
type redisServer struct {
	Addr string
	cmd  *exec.Cmd
	dir  string
}

func startRedis(bin string) (*redisServer, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	dir, err := os.MkdirTemp("", "peer-bench-redis-")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir,
		"--maxmemory", "0", "--loglevel", "warning")
	if err := cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	s := &redisServer{Addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd, dir: dir}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr, 100*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return s, nil
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("redis-server did not listen on %s", s.Addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *redisServer) Stop() {
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	_ = os.RemoveAll(s.dir)
}

// admin is a plain rueidis connection for the harness's own commands
// (FLUSHALL, INFO); it never reads benchmark keys.
type admin struct{ c rueidis.Client }

func newAdmin(addr string) (*admin, error) {
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
	if err != nil {
		return nil, err
	}
	return &admin{c: c}, nil
}

func (a *admin) Close() { a.c.Close() }

func (a *admin) flush() error {
	return a.c.Do(context.Background(), a.c.B().Flushall().Build()).Error()
}

// gets returns how many GET commands Redis has executed (INFO
// commandstats), inside MULTI/EXEC or not: each is a read that a local
// tier did not answer.
func (a *admin) gets() (int64, error) {
	s, err := a.c.Do(context.Background(), a.c.B().Info().Section("commandstats").Build()).ToString()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "cmdstat_get:") {
			continue
		}
		for _, f := range strings.Split(strings.TrimPrefix(line, "cmdstat_get:"), ",") {
			if v, ok := strings.CutPrefix(f, "calls="); ok {
				return strconv.ParseInt(v, 10, 64)
			}
		}
	}
	return 0, nil
}
