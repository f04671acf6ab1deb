package redisproc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestFreePort_Bus(t *testing.T) {
	t.Parallel()
	// A port free when FreePort returns may be taken a moment later by
	// anything on the machine (an outgoing connection's source port, a
	// server of a test running in parallel): the test fails only when
	// every one of several pairs is already taken.
	var errs []error
	for range 10 {
		port, err := FreePort(true)
		if err != nil {
			t.Fatal(err)
		}
		if port+BusOffset > 65535 {
			t.Fatalf("port %d: its bus port is out of range", port)
		}
		err = bindable(port, port+BusOffset)
		if err == nil {
			return
		}
		errs = append(errs, err)
	}
	t.Fatalf("no pair FreePort returned was free: %v", errors.Join(errs...))
}

// bindable reports whether every port can be listened on at once.
func bindable(ports ...int) error {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for _, p := range ports {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			return fmt.Errorf("port %d is not free: %w", p, err)
		}
		ls = append(ls, l)
	}
	return nil
}

func TestPoll(t *testing.T) {
	t.Parallel()
	calls := 0
	err := Poll(t.Context(), time.Millisecond, time.Second, func(ctx context.Context) error {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("the probe has no deadline")
		}
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("Poll = %v after %d calls, want nil after 3", err, calls)
	}
	calls = 0
	err = Poll(t.Context(), time.Millisecond, 0, func(context.Context) error {
		calls++
		return ErrGiveUp
	})
	if !errors.Is(err, ErrGiveUp) || calls != 1 {
		t.Fatalf("Poll = %v after %d calls, want ErrGiveUp after 1", err, calls)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	err = Poll(ctx, time.Millisecond, 0, func(context.Context) error { return errors.New("never") })
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "never") {
		t.Fatalf("Poll past its deadline = %v", err)
	}
}

func TestParseInfo(t *testing.T) {
	t.Parallel()
	got := ParseInfo("txt:# Replication\r\nrole:master\r\n\r\nmaster_host:10.0.0.1:x\r\n")
	if len(got) != 2 || got["role"] != "master" || got["master_host"] != "10.0.0.1:x" {
		t.Fatalf("ParseInfo = %v", got)
	}
}

// TestProcess_Exited starts a process that fails as Redis does when its
// port is taken, and one that runs until killed.
func TestProcess_Exited(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p, err := Start("sh", []string{"-c", "echo 'Could not create server TCP listening socket: Address already in use'; exit 1"},
		dir, filepath.Join(dir, "a.log"), true)
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	err = p.Exited()
	if !errors.Is(err, ErrGiveUp) || !errors.Is(err, ErrExited) || !errors.Is(err, ErrPortInUse) {
		t.Fatalf("Exited = %v", err)
	}

	q, err := Start("sleep", []string{"60"}, dir, filepath.Join(dir, "b.log"), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Exited(); err != nil {
		t.Fatalf("Exited of a running process = %v", err)
	}
	if err := q.Kill(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := q.Exited(); !errors.Is(err, ErrExited) || errors.Is(err, ErrPortInUse) {
		t.Fatalf("Exited after Kill = %v", err)
	}
}

func TestStartOnFreePort(t *testing.T) {
	t.Parallel()
	errOther := errors.New("other")
	for _, tc := range []struct {
		name    string
		results []error // of start's calls, in order
		want    error   // nil, or what the error wraps
		calls   int
	}{
		{"first port", []error{nil}, nil, 1},
		{"port taken once", []error{ErrPortInUse, nil}, nil, 2},
		{"other error", []error{ErrPortInUse, errOther}, errOther, 2},
		{"every port taken", []error{ErrPortInUse, ErrPortInUse, ErrPortInUse}, ErrNoFreePort, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			next, calls := 1000, 0
			var ports []int
			err := StartOnFreePort(3, func() (int, error) { next++; return next, nil }, func(port int) error {
				ports = append(ports, port)
				calls++
				return tc.results[calls-1]
			})
			if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			if calls != tc.calls || ports[len(ports)-1] != 1000+calls {
				t.Errorf("start called %d times with %v, want %d times with a fresh port each", calls, ports, tc.calls)
			}
		})
	}
}

func TestAgreedMaster(t *testing.T) {
	t.Parallel()
	type sentinel struct {
		running bool
		master  string
	}
	for _, tc := range []struct {
		name      string
		sentinels []sentinel
		want      string
		wantErr   string
		giveUp    bool // the error wraps ErrGiveUp
	}{
		{"agree", []sentinel{{true, "a"}, {false, "b"}, {true, "a"}}, "a", "", false},
		{"disagree", []sentinel{{true, "a"}, {true, "b"}}, "", "sentinels disagree: a and b", false},
		{"none running", []sentinel{{false, "a"}}, "", "no sentinel is running", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := AgreedMaster(t.Context(), tc.sentinels, func(s sentinel) bool { return s.running },
				func(_ context.Context, s sentinel) (string, error) { return s.master, nil })
			if got != tc.want || (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("AgreedMaster = %q, %v; want %q, %q", got, err, tc.want, tc.wantErr)
			}
			if errors.Is(err, ErrGiveUp) != tc.giveUp {
				t.Errorf("err %v wraps ErrGiveUp: %v, want %v", err, !tc.giveUp, tc.giveUp)
			}
		})
	}
}
