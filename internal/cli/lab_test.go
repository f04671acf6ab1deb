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

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/redistest"
)

// labTimeout bounds the start and the stop of a lab.
const labTimeout = 90 * time.Second

var (
	settingLine = regexp.MustCompile(`(?m)^([A-Z_]+)=(.*)$`)
	pidLine     = regexp.MustCompile(`(?m) pid (\d+)$`)
	dirLine     = regexp.MustCompile(`(?m)^# tiercache lab: .*, in (\S+)$`)
)

// TestRun_Lab runs `tiercache lab sentinel` as a user would: it waits for
// the settings, connects tiercache with them, stops the lab as Ctrl-C
// does, and checks that no Redis process is left.
func TestRun_Lab(t *testing.T) {
	redistest.Require(t)
	clearEnv(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- Run(ctx, []string{"lab", "sentinel"}, stdout, stderr) }()

	deadline := time.Now().Add(labTimeout)
	for !strings.Contains(stdout.String(), "Press Ctrl-C") {
		select {
		case code := <-done:
			t.Fatalf("lab exited with %d:\n%s", code, stderr)
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("no settings after %v:\n%s", labTimeout, stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	out := stdout.String()
	settings := map[string]string{}
	for _, m := range settingLine.FindAllStringSubmatch(out, -1) {
		settings[m[1]] = m[2]
	}
	for _, name := range []string{"REDIS_SENTINEL_HOSTS", "REDIS_SERVICE_NAME", "REDIS_USERNAME", "REDIS_PASSWORD_FILE", "REDIS_SENTINEL_PASSWORD_FILE"} {
		if settings[name] == "" {
			t.Errorf("no %s in the output:\n%s", name, out)
		}
	}
	pw, err := os.ReadFile(settings["REDIS_PASSWORD_FILE"])
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, strings.TrimSpace(string(pw))) || strings.Contains(stderr.String(), strings.TrimSpace(string(pw))) {
		t.Error("the output shows the password")
	}

	for k, v := range settings {
		t.Setenv(k, v)
	}
	opts, err := tiercache.OptionsFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	c, err := tiercache.New(opts)
	if err != nil {
		t.Fatalf("tiercache.New with the printed settings: %v", err)
	}
	if err := c.Set(t.Context(), "lab:k", "v"); err != nil {
		t.Fatalf("Set: %v", err)
	}
	var v string
	if err := c.Get(t.Context(), "lab:k", &v); err != nil || v != "v" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	c.Close()

	var pids []int
	for _, m := range pidLine.FindAllStringSubmatch(out, -1) {
		pid, _ := strconv.Atoi(m[1])
		pids = append(pids, pid)
	}
	if len(pids) != 6 {
		t.Errorf("%d pids in the output, want 6:\n%s", len(pids), out)
	}
	cancel() // Ctrl-C
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code %d after Ctrl-C, want 0:\n%s", code, stderr)
		}
	case <-time.After(labTimeout):
		t.Fatalf("lab still running %v after Ctrl-C", labTimeout)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d still exists (kill 0: %v)", pid, err)
		}
	}
	if m := dirLine.FindStringSubmatch(out); m == nil {
		t.Errorf("no lab directory in the output:\n%s", out)
	} else if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
		t.Errorf("lab directory %s still exists: %v", m[1], err)
	}
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

	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	cmd := exec.Command(bin, "lab", "cluster")
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})

	deadline := time.Now().Add(labTimeout)
	for !strings.Contains(stdout.String(), "Press Ctrl-C") {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("lab exited early (%v):\n%s", err, stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no settings after %v:\n%s", labTimeout, stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	out := stdout.String()
	settings := map[string]string{}
	for _, m := range settingLine.FindAllStringSubmatch(out, -1) {
		settings[m[1]] = m[2]
	}
	if settings["REDIS_CLUSTER_ENABLED"] != "true" || settings["REDIS_USERNAME"] == "" || settings["REDIS_PASSWORD_FILE"] == "" {
		t.Fatalf("the settings lack the cluster, the user or the password file:\n%s", out)
	}
	for k, v := range settings {
		t.Setenv(k, v)
	}
	opts, err := tiercache.OptionsFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	c, err := tiercache.New(opts)
	if err != nil {
		t.Fatalf("tiercache.New with the printed settings: %v", err)
	}
	for i := range 10 { // spread over the shards
		k := "ctrlc:" + strconv.Itoa(i)
		if err := c.Set(t.Context(), k, i); err != nil {
			t.Fatalf("Set(%s): %v", k, err)
		}
	}
	c.Close()

	var pids []int
	for _, m := range pidLine.FindAllStringSubmatch(out, -1) {
		pid, _ := strconv.Atoi(m[1])
		pids = append(pids, pid)
	}
	if len(pids) != 6 {
		t.Fatalf("%d pids in the output, want 6:\n%s", len(pids), out)
	}
	m := dirLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no lab directory in the output:\n%s", out)
	}
	dir := m[1]

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
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d still exists (kill 0: %v)", pid, err)
		}
	}
	// Nor any other process working in the lab's directory, such as a
	// child forked for a save (Redis rewrites its command line, so the
	// working directory is what names it).
	procs, _ := filepath.Glob("/proc/[0-9]*/cwd")
	for _, p := range procs {
		if cwd, err := os.Readlink(p); err == nil && strings.HasPrefix(cwd, dir) {
			t.Errorf("%s still runs in %s", filepath.Dir(p), cwd)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("lab directory %s still exists: %v", dir, err)
	}
}
