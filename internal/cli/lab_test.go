package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/internal/tiercachetest"
)

// labTimeout bounds the start and the stop of a lab.
const labTimeout = 90 * time.Second

var (
	settingLine = regexp.MustCompile(`(?m)^([A-Z_]+)=(.*)$`)
	pidLine     = regexp.MustCompile(`(?m) pid (\d+)$`)
	dirLine     = regexp.MustCompile(`(?m)^# tiercache lab: .*, in (\S+)$`)
)

// labRun is the output of a running lab, once it has printed its
// settings.
type labRun struct {
	out      string            // stdout
	settings map[string]string // the KEY=VALUE lines
	pids     []int             // of the nodes
	dir      string            // the lab's directory
}

// waitLab waits until the lab writing to stdout prints "Press Ctrl-C" and
// parses its output. exited reports whether the lab has ended early.
func waitLab(t *testing.T, stdout, stderr *tiercachetest.Buffer, exited func() bool) labRun {
	t.Helper()
	deadline := time.Now().Add(labTimeout)
	for !strings.Contains(stdout.String(), "Press Ctrl-C") {
		if exited() {
			t.Fatalf("lab exited early:\n%s", stderr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no settings after %v:\n%s", labTimeout, stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	r := labRun{out: stdout.String(), settings: map[string]string{}}
	for _, m := range settingLine.FindAllStringSubmatch(r.out, -1) {
		r.settings[m[1]] = m[2]
	}
	for _, m := range pidLine.FindAllStringSubmatch(r.out, -1) {
		pid, _ := strconv.Atoi(m[1])
		r.pids = append(r.pids, pid)
	}
	if len(r.pids) != 6 {
		t.Errorf("%d pids in the output, want 6:\n%s", len(r.pids), r.out)
	}
	m := dirLine.FindStringSubmatch(r.out)
	if m == nil {
		t.Fatalf("no lab directory in the output:\n%s", r.out)
	}
	r.dir = m[1]
	// The password is given as a file, never shown.
	pw, err := os.ReadFile(r.settings["REDIS_PASSWORD_FILE"])
	if err != nil {
		t.Fatalf("REDIS_PASSWORD_FILE: %v\n%s", err, r.out)
	}
	if p := strings.TrimSpace(string(pw)); strings.Contains(r.out, p) || strings.Contains(stderr.String(), p) {
		t.Error("the output shows the password")
	}
	return r
}

// connectAndWrite connects tiercache with the lab's settings, through the
// environment as `tiercache serve` does, and writes and reads keys.
func (r labRun) connectAndWrite(t *testing.T) {
	t.Helper()
	c := tiercachetest.FromEnv(t, r.settings)
	defer c.Close()
	for i := range 10 { // spread over a cluster's shards
		k := "lab:" + strconv.Itoa(i)
		if err := c.Set(t.Context(), k, k); err != nil {
			t.Fatalf("Set(%s): %v", k, err)
		}
		var v string
		if err := c.Get(t.Context(), k, &v); err != nil || v != k {
			t.Fatalf("Get(%s) = %q, %v", k, v, err)
		}
	}
}

// checkGone checks that the lab left no process and no directory behind:
// neither the nodes it printed nor any other process working in its
// directory, such as a child forked for a save (Redis rewrites its command
// line, so the working directory is what names it).
func (r labRun) checkGone(t *testing.T) {
	t.Helper()
	for _, pid := range r.pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d still exists (kill 0: %v)", pid, err)
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cwd")
	for _, p := range procs {
		if cwd, err := os.Readlink(p); err == nil && strings.HasPrefix(cwd, r.dir) {
			t.Errorf("%s still runs in %s", filepath.Dir(p), cwd)
		}
	}
	if _, err := os.Stat(r.dir); !os.IsNotExist(err) {
		t.Errorf("lab directory %s still exists: %v", r.dir, err)
	}
}

// TestRun_Lab runs `tiercache lab sentinel` through Run, as a user would:
// it waits for the settings, connects tiercache with them, stops the lab
// by cancelling Run's context (what main does on SIGINT), and checks that
// nothing is left.
func TestRun_Lab(t *testing.T) {
	redistest.Require(t)
	clearEnv(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stdout, stderr := &tiercachetest.Buffer{}, &tiercachetest.Buffer{}
	done := make(chan int, 1)
	go func() { done <- Run(ctx, []string{"lab", "sentinel"}, stdout, stderr) }()
	t.Cleanup(func() { cancel(); <-done; done <- 0 })
	r := waitLab(t, stdout, stderr, func() bool { return len(done) > 0 })
	for _, name := range []string{"REDIS_SENTINEL_HOSTS", "REDIS_SERVICE_NAME", "REDIS_USERNAME", "REDIS_SENTINEL_PASSWORD_FILE"} {
		if r.settings[name] == "" {
			t.Errorf("no %s in the output:\n%s", name, r.out)
		}
	}
	r.connectAndWrite(t)

	cancel() // Ctrl-C
	select {
	case code := <-done:
		done <- code
		if code != 0 {
			t.Errorf("exit code %d after Ctrl-C, want 0:\n%s", code, stderr)
		}
	case <-time.After(labTimeout):
		t.Fatalf("lab still running %v after Ctrl-C", labTimeout)
	}
	r.checkGone(t)
}

func TestRun_LabUsage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string // in stdout for code 0, stderr otherwise
	}{
		{"no topology", []string{"lab"}, 2, "want one topology"},
		{"unknown topology", []string{"lab", "ring"}, 2, `["ring"]`},
		{"two topologies", []string{"lab", "sentinel", "cluster"}, 2, "want one topology"},
		{"help", []string{"lab", "-h"}, 0, "tiercache lab [flags] sentinel|cluster"},
		{"flags after the topology", []string{"lab", "sentinel", "--deploy", "/nonexistent"}, 1, "no such file"},
		{"missing deploy dir", []string{"lab", "--deploy", "/nonexistent", "sentinel"}, 1, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			code := Run(t.Context(), tc.args, &stdout, &stderr)
			got := stderr.String()
			if tc.code == 0 {
				got = stdout.String()
			}
			if code != tc.code || !strings.Contains(got, tc.want) {
				t.Errorf("exit code %d (want %d), output lacks %q?\nstdout:\n%s\nstderr:\n%s", code, tc.code, tc.want, &stdout, &stderr)
			}
		})
	}
}

// TestLab_CtrlC builds the tiercache binary and runs `tiercache lab
// cluster` in its own process group, as a shell runs a foreground job. It
// connects tiercache with the printed settings, then sends SIGINT to the
// whole group, as Ctrl-C in a terminal does, and checks that the lab
// exits 0 and leaves no process and no directory behind.
func TestLab_CtrlC(t *testing.T) {
	redistest.Require(t)
	clearEnv(t)
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go not on PATH: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "tiercache")
	build := exec.CommandContext(t.Context(), goBin, "build", "-o", bin, "../../cmd/tiercache")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	stdout, stderr := &tiercachetest.Buffer{}, &tiercachetest.Buffer{}
	cmd := exec.Command(bin, "lab", "cluster")
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if len(exited) == 0 {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		<-exited
	})
	r := waitLab(t, stdout, stderr, func() bool { return len(exited) > 0 })
	if r.settings["REDIS_CLUSTER_ENABLED"] != "true" || r.settings["REDIS_USERNAME"] == "" {
		t.Fatalf("the settings lack the cluster or the user:\n%s", r.out)
	}
	r.connectAndWrite(t)

	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil { // Ctrl-C
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Errorf("after Ctrl-C: %v, want exit code 0:\n%s", err, stderr)
		}
	case <-time.After(labTimeout):
		t.Fatalf("lab still running %v after Ctrl-C:\n%s", labTimeout, stderr)
	}
	if !strings.Contains(stderr.String(), "tiercache lab: stopped") {
		t.Errorf("no clean stop in stderr:\n%s", stderr)
	}
	r.checkGone(t)
}
