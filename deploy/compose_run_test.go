package deploy_test

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"go.yaml.in/yaml/v3"

	"github.com/tiercache/tiercache/internal/redisproc"
	"github.com/tiercache/tiercache/internal/redistest"
)

// TestComposeCommands runs the commands of the compose file's data nodes
// and sentinels, as docker-compose resolves them, as local processes with
// the secrets of make-secrets.sh: the shell snippets that write the
// replication credentials and the sentinels' secrets, redis-server with
// the ACL file from its secret, redis-sentinel from its copy. A container
// path becomes a local one; the data nodes' working directory stands for
// /data. Only what a loopback machine must change is changed: the ports,
// the master's address in $REPLICAOF and in "sentinel monitor", and the
// included redis-defrag.conf, which is empty here (Debian's redis-server
// cannot defragment; TestRedisConfFiles checks that file).
func TestComposeCommands(t *testing.T) {
	redistest.Require(t)
	var cfg composeConfig
	if err := yaml.Unmarshal([]byte(compose(t, nil, "config")), &cfg); err != nil {
		t.Fatal(err)
	}
	secrets := makeSecrets(t, "--namespace", deployNamespace)
	paths := containerPaths(t, cfg, secrets)

	masterPort := freePort(t)
	runService(t, cfg, "redis-master", paths, map[string]string{"$REPLICAOF": "--port " + strconv.Itoa(masterPort)})
	master := "127.0.0.1:" + strconv.Itoa(masterPort)
	adminPW := secrets.read(t, "admin.password")
	for _, name := range []string{"redis-replica-1", "redis-replica-2"} {
		runService(t, cfg, name, paths, map[string]string{
			"$REPLICAOF": "--port " + strconv.Itoa(freePort(t)) + " --replicaof 127.0.0.1 " + strconv.Itoa(masterPort),
		})
	}
	redistest.Eventually(t, waitFor, "the replicas synced as the replica user", func() error {
		info, err := infoAs(master, "admin", adminPW)
		if err != nil {
			return err
		}
		if info["connected_slaves"] != "2" || info["min_slaves_good_slaves"] != "2" {
			return fmt.Errorf("connected_slaves:%s min_slaves_good_slaves:%s", info["connected_slaves"], info["min_slaves_good_slaves"])
		}
		return nil
	})

	// The sentinels' configuration, as mounted: the master's address and
	// each sentinel's port are all a loopback machine changes.
	sentinelConf, err := os.ReadFile("sentinel.conf")
	if err != nil {
		t.Fatal(err)
	}
	sentinelsPW := secrets.read(t, "sentinels.password")
	var sentinels []string
	for i := 1; i <= 3; i++ {
		port := freePort(t)
		conf := strings.Replace(string(sentinelConf), "sentinel monitor mymaster redis-master 6379 2", "sentinel monitor mymaster 127.0.0.1 "+strconv.Itoa(masterPort)+" 2", 1)
		conf = strings.Replace(conf, "\nport 26379\n", "\nport "+strconv.Itoa(port)+"\n", 1)
		mounted := filepath.Join(t.TempDir(), "sentinel.conf")
		if err := os.WriteFile(mounted, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		p := maps.Clone(paths)
		p["/usr/local/etc/redis/sentinel.conf"] = mounted
		runService(t, cfg, fmt.Sprintf("redis-sentinel-%d", i), p, nil)
		sentinels = append(sentinels, "127.0.0.1:"+strconv.Itoa(port))
	}
	for _, addr := range sentinels {
		redistest.Eventually(t, waitFor, addr+" sees the master as the sentinel user, 2 replicas and 2 sentinels", func() error {
			reply, err := doAs(addr, "", sentinelsPW, "SENTINEL", "MASTER", "mymaster")
			if err != nil {
				return err
			}
			m, err := reply.AsStrMap()
			if err != nil {
				return err
			}
			if m["flags"] != "master" || m["num-slaves"] != "2" || m["num-other-sentinels"] != "2" {
				return fmt.Errorf("flags=%s num-slaves=%s num-other-sentinels=%s", m["flags"], m["num-slaves"], m["num-other-sentinels"])
			}
			return nil
		})
	}
	// The application's user writes in its namespace, and only there.
	app := secrets.read(t, "tiercache.password")
	if _, err := doAs(master, "tiercache", app, "SET", deployNamespace+":k", "v"); err != nil {
		t.Errorf("SET %s:k as tiercache: %v", deployNamespace, err)
	}
	if _, err := doAs(master, "tiercache", app, "SET", "tiercache:k", "v"); err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
		t.Errorf("SET tiercache:k as the user of %s: %v, want NOPERM", deployNamespace, err)
	}
}

// containerPaths maps the container paths of the compose file to local
// ones: each secret to its file from make-secrets.sh, the mounted deploy
// files to the files here, redis-defrag.conf to an empty file.
func containerPaths(t *testing.T, cfg composeConfig, s secretsRun) map[string]string {
	t.Helper()
	m := make(map[string]string)
	for name, sec := range cfg.Secrets {
		m["/run/secrets/"+name] = filepath.Join(s.dir, filepath.Base(sec.File))
	}
	conf, err := filepath.Abs("redis-production.conf")
	if err != nil {
		t.Fatal(err)
	}
	m["/usr/local/etc/redis/redis.conf"] = conf
	empty := filepath.Join(t.TempDir(), "redis-defrag.conf")
	if err := os.WriteFile(empty, []byte("# activedefrag: see TestRedisConfFiles\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m["/usr/local/etc/redis/redis-defrag.conf"] = empty
	return m
}

// runService runs the command of a compose service, with the container
// paths of paths and the variables of vars replaced, in a fresh directory
// that stands for /data, and stops it when the test ends.
func runService(t *testing.T, cfg composeConfig, name string, paths, vars map[string]string) {
	t.Helper()
	cmd := cfg.Services[name].Command
	if len(cmd) != 3 || cmd[0] != "sh" || cmd[1] != "-c" {
		t.Fatalf("%s: command %q, want sh -c SCRIPT", name, cmd)
	}
	dir := t.TempDir()
	script := strings.ReplaceAll(cmd[2], "$$", "$") // compose's escape of $
	for from, to := range vars {
		script = strings.ReplaceAll(script, from, to)
	}
	script = strings.ReplaceAll(script, "/tmp/replication.conf", filepath.Join(dir, "replication.conf"))
	// Longest first, so that a path never replaces part of a longer one.
	from := slices.SortedFunc(maps.Keys(paths), func(a, b string) int { return len(b) - len(a) })
	for _, f := range from {
		script = strings.ReplaceAll(script, f, paths[f])
	}
	script = strings.ReplaceAll(script, "/data/", dir+"/")
	if strings.Contains(script, "/run/secrets/") || strings.Contains(script, "/usr/local/etc/") {
		t.Fatalf("%s: a container path is left in\n%s", name, script)
	}
	p, err := redisproc.Start("sh", []string{"-c", script}, dir, filepath.Join(dir, "out.log"), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.Kill(10 * time.Second)
		if t.Failed() {
			t.Logf("%s's log:\n%s", name, redisproc.LogTail(p.Log))
		}
	})
}

func freePort(t *testing.T) int {
	t.Helper()
	port, err := redisproc.FreePort(false)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// doAs runs one command on addr on a fresh connection, logged in as user
// (or with a password only, for a sentinel).
func doAs(addr, user, password string, args ...string) (rueidis.RedisMessage, error) {
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress: []string{addr}, Username: user, Password: password,
		DisableCache: true, ForceSingleClient: true, ClientSetInfo: rueidis.DisableClientSetInfo, DisableRetry: true,
	})
	if err != nil {
		return rueidis.RedisMessage{}, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return c.Do(ctx, c.B().Arbitrary(args...).Build()).ToMessage()
}

// infoAs returns INFO replication of addr, asked as user.
func infoAs(addr, user, password string) (map[string]string, error) {
	m, err := doAs(addr, user, password, "INFO", "replication")
	if err != nil {
		return nil, err
	}
	text, err := m.ToString()
	if err != nil {
		return nil, err
	}
	return redisproc.ParseInfo(text), nil
}
