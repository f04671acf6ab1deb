package deploy_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tiercache/tiercache/internal/confcheck"
)

// secretFiles are the files make-secrets.sh creates: every secret the
// compose file names, the passwords the derived files are made from, and
// users.acl.
var secretFiles = []string{
	"admin.password", "exporter.json", "exporter.password", "grafana.password", "replica.password",
	"sentinel.password", "sentinels.password", "tiercache.password", "tiercache.token", "users.acl",
}

// secretsRun is one run of make-secrets.sh into a temporary directory.
type secretsRun struct {
	dir, env string // the secrets directory and the .env file
}

// makeSecrets runs make-secrets.sh with --dir and --env-file in a fresh
// temporary directory and the arguments args, and fails the test when it
// does not exit 0.
func makeSecrets(t *testing.T, args ...string) secretsRun {
	t.Helper()
	base := t.TempDir()
	r := secretsRun{dir: filepath.Join(base, "secrets"), env: filepath.Join(base, ".env")}
	if out, err := r.run(t, args...); err != nil {
		t.Fatalf("make-secrets.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return r
}

// run runs make-secrets.sh again on the same directory and returns its
// output. The environment's CACHE_NAMESPACE is cleared: only the flags
// and the .env file say the namespace.
func (r secretsRun) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "sh", append([]string{"make-secrets.sh", "--dir", r.dir, "--env-file", r.env}, args...)...)
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "CACHE_NAMESPACE=") })
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// read returns the content of a file of the secrets directory.
func (r secretsRun) read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// snapshot returns the content of every secret file.
func (r secretsRun) snapshot(t *testing.T) map[string]string {
	t.Helper()
	m := make(map[string]string)
	for _, f := range secretFiles {
		m[f] = r.read(t, f)
	}
	return m
}

// TestMakeSecrets checks the files make-secrets.sh writes, without Redis:
// every secret the compose file names, random and distinct, the hashes
// and the namespace in users.acl, the modes, nothing secret on its
// output, and that a second run keeps everything unless --force.
func TestMakeSecrets(t *testing.T) {
	t.Parallel()
	r := makeSecrets(t, "--namespace", "pynomaly_prod")
	entries, err := os.ReadDir(r.dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, secretFiles) {
		t.Errorf("make-secrets.sh wrote %v, want %v", names, secretFiles)
	}
	checkModes(t, r.dir)
	first := r.snapshot(t)

	// Random, distinct, letters and digits only.
	seen := map[string]string{}
	for _, f := range secretFiles {
		if !strings.HasSuffix(f, ".password") && !strings.HasSuffix(f, ".token") {
			continue
		}
		v := first[f]
		if len(v) < 48 || strings.Trim(v, "0123456789abcdef") != "" {
			t.Errorf("%s = %d characters, not 48 or more hex digits without a newline", f, len(v))
		}
		if other, ok := seen[v]; ok {
			t.Errorf("%s and %s hold the same secret", f, other)
		}
		seen[v] = f
	}
	// users.acl: acl.conf with each user's hash and the namespace.
	acl := first["users.acl"]
	if strings.Contains(acl, "#0000000000") {
		t.Errorf("users.acl still holds a placeholder hash:\n%s", acl)
	}
	for _, u := range []string{"tiercache", "admin", "replica", "sentinel", "exporter"} {
		if !strings.Contains(acl, "user "+u+" on #"+sha256Hex(first[u+".password"])+" ") {
			t.Errorf("users.acl has no line for %s with the hash of %s.password", u, u)
		}
	}
	if !strings.Contains(acl, " ~pynomaly_prod:* ~pynomaly_prod#* ") || strings.Contains(acl, "~tiercache") {
		t.Errorf("users.acl does not confine the tiercache user to pynomaly_prod:\n%s", acl)
	}
	var exporter map[string]string
	if err := json.Unmarshal([]byte(first["exporter.json"]), &exporter); err != nil {
		t.Fatalf("exporter.json: %v", err)
	}
	if exporter["redis://redis-master:6379"] != first["exporter.password"] || len(exporter) != 3 {
		t.Errorf("exporter.json = %v, want the exporter password for the three data nodes", slices.Sorted(maps.Keys(exporter)))
	}
	if env, _ := os.ReadFile(r.env); string(env) != "CACHE_NAMESPACE=pynomaly_prod\n" {
		t.Errorf(".env = %q", env)
	}
	// The production checklist passes redis-production.conf with these
	// users, without the warning about placeholder hashes.
	rep, err := confcheck.CheckFile("redis-production.conf", confcheck.Options{ACLFile: filepath.Join(r.dir, "users.acl")})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Worst() != confcheck.OK {
		var b strings.Builder
		_ = rep.Write(&b)
		t.Errorf("tiercache conf check with the generated users.acl:\n%s", b.String())
	}

	// A second run keeps every file; the .env file now says the namespace.
	out, err := r.run(t)
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	if got := r.snapshot(t); !maps.Equal(got, first) {
		t.Errorf("a second run changed the secrets:\n%s", out)
	}
	if strings.Contains(out, "created") || strings.Contains(out, "updated") {
		t.Errorf("a second run reports changes:\n%s", out)
	}
	for _, v := range first {
		if strings.Contains(out, strings.TrimSpace(v)) {
			t.Errorf("make-secrets.sh printed a secret:\n%s", out)
		}
	}

	// A new namespace rewrites users.acl and .env, and keeps the passwords.
	if out, err := r.run(t, "--namespace", "orders"); err != nil {
		t.Fatalf("--namespace orders: %v\n%s", err, out)
	}
	moved := r.snapshot(t)
	if !strings.Contains(moved["users.acl"], " ~orders:* ~orders#* ") {
		t.Errorf("users.acl after --namespace orders:\n%s", moved["users.acl"])
	}
	if moved["tiercache.password"] != first["tiercache.password"] || moved["tiercache.token"] != first["tiercache.token"] {
		t.Error("--namespace replaced passwords")
	}
	if env, _ := os.ReadFile(r.env); string(env) != "CACHE_NAMESPACE=orders\n" {
		t.Errorf(".env after --namespace orders = %q", env)
	}

	// --force replaces every secret.
	if out, err := r.run(t, "--force"); err != nil {
		t.Fatalf("--force: %v\n%s", err, out)
	}
	forced := r.snapshot(t)
	for _, f := range []string{"tiercache.password", "admin.password", "tiercache.token", "users.acl", "exporter.json"} {
		if forced[f] == moved[f] {
			t.Errorf("--force kept %s", f)
		}
	}
	checkModes(t, r.dir)
}

// checkModes checks that the secrets directory is the operator's alone
// and that its files can be read by the containers' users, through a
// bind mount that keeps the host's mode.
func checkModes(t *testing.T, dir string) {
	t.Helper()
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the secrets directory: %v, %v; want mode 0700", fi.Mode(), err)
	}
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if fi, err := d.Info(); err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: mode %v, %v; want 0644", path, fi.Mode(), err)
		}
		return nil
	})
}

// TestMakeSecrets_BadArguments checks that a namespace the ACL file
// cannot hold, an unknown option or a missing value is refused with exit
// status 2 before anything is written, and that --help exits 0.
func TestMakeSecrets_BadArguments(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--nope"}, {"--namespace"}} {
		r := secretsRun{dir: filepath.Join(t.TempDir(), "secrets"), env: filepath.Join(t.TempDir(), ".env")}
		// The bad argument comes last, after --dir and --env-file.
		out, err := r.run(t, args...)
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(out, "make-secrets.sh") {
			t.Errorf("%v: %v\n%s; want exit 2 with the usage", args, err, out)
		}
		if _, err := os.Stat(r.dir); err == nil {
			t.Errorf("%v created %s", args, r.dir)
		}
	}
	r := secretsRun{dir: filepath.Join(t.TempDir(), "secrets"), env: filepath.Join(t.TempDir(), ".env")}
	if out, err := r.run(t, "--help"); err != nil || !strings.Contains(out, "--namespace NS") {
		t.Errorf("--help: %v\n%s", err, out)
	}
	for _, ns := range []string{"a b", "a*", "a#b", `a"b`, "{a}"} {
		r := secretsRun{dir: filepath.Join(t.TempDir(), "secrets"), env: filepath.Join(t.TempDir(), ".env")}
		out, err := r.run(t, "--namespace", ns)
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(out, "namespace") {
			t.Errorf("--namespace %q: %v\n%s; want exit 2 naming the namespace", ns, err, out)
		}
		if _, err := os.Stat(r.dir); err == nil {
			t.Errorf("--namespace %q created %s", ns, r.dir)
		}
	}
}

// sha256Hex is how an ACL file stores a password: the hex SHA-256.
func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
