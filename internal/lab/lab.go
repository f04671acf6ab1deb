// Package lab starts the Redis topologies of a tiercache deployment from
// local redis-server and redis-sentinel processes on loopback, configured
// by the production files in deploy/: a Sentinel group (a master, two
// replicas and three sentinels) or a Cluster (three masters, three
// replicas). `tiercache lab` runs it so that failover can be tried without
// Docker, and tests use it to prove that the deploy files work.
//
// Every node loads deploy/redis-production.conf (or sentinel.conf) with
// only what a loopback lab must change: port, bind address, data
// directory, the path of the ACL file, replication and sentinel targets,
// and the secrets the files leave out. Passwords are random per lab.
package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/tiercache/tiercache/deploy"
)

// Files are the deploy files a lab starts from.
type Files struct {
	// RedisConf configures every data node (redis-production.conf).
	RedisConf string
	// SentinelConf configures every sentinel (sentinel.conf).
	SentinelConf string
	// ACL is the ACL file the data nodes load (acl.conf).
	ACL string
}

// DeployFiles returns the files of deploy/, as built into the binary.
func DeployFiles() Files {
	return Files{RedisConf: deploy.RedisConf, SentinelConf: deploy.SentinelConf, ACL: deploy.ACL}
}

// ReadFiles reads redis-production.conf, sentinel.conf and acl.conf from
// dir, for a lab of edited copies.
func ReadFiles(dir string) (Files, error) {
	var f Files
	for name, dst := range map[string]*string{
		"redis-production.conf": &f.RedisConf,
		"sentinel.conf":         &f.SentinelConf,
		"acl.conf":              &f.ACL,
	} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return Files{}, fmt.Errorf("lab: %w", err)
		}
		*dst = string(b)
	}
	return f, nil
}

// Options configure a lab. The zero value starts from the embedded deploy
// files in a fresh temporary directory.
type Options struct {
	// Files are the configuration files. Zero means DeployFiles().
	Files Files
	// Dir is where the lab's directory is created. Empty means the
	// system's temporary directory.
	Dir string
	// KeepDir keeps the lab's directory (logs, data, configuration) after
	// Close. False removes it.
	KeepDir bool
	// KeepBind keeps the files' bind directives, which listen on every
	// interface, so that a test runs the files with the fewest changes.
	// False binds every node to loopback only.
	KeepBind bool
	// Secrets is a directory made by deploy/make-secrets.sh. When set,
	// the lab uses its passwords and its users.acl, as the compose file
	// does, instead of random passwords and the ACL of Files.
	Secrets string
	// Namespace is the CACHE_NAMESPACE of Settings. Empty means
	// "tiercache", the namespace of deploy/acl.conf.
	Namespace string
}

// Topologies a lab can start.
const (
	Sentinel = "sentinel"
	Cluster  = "cluster"
)

// ACL users of deploy/acl.conf that a lab gives passwords to.
const (
	UserTiercache = "tiercache"
	UserAdmin     = "admin"
	userReplica   = "replica"
	userSentinel  = "sentinel"
)

// MasterName is the master set the sentinels monitor.
const MasterName = "mymaster"

// Lab is a running topology. Close stops it.
type Lab struct {
	// Topology is Sentinel or Cluster.
	Topology string
	// Dir holds one directory per node, the ACL file and, under secrets/,
	// one file per password (unless Options.Secrets names another
	// directory).
	Dir string
	// Data are the data nodes in start order: for Sentinel the first
	// master and then its replicas, for Cluster all six nodes.
	Data []*Node
	// Sentinels are the sentinels of a Sentinel lab.
	Sentinels []*Node
	// Notes say what the lab changed in the deploy files beyond ports,
	// paths and secrets, and why.
	Notes []string

	files     Files
	keep      bool
	keepBind  bool
	passwords map[string]string // ACL user (or "sentinels") -> password
	secrets   string            // directory of the password files
	namespace string            // CACHE_NAMESPACE of Settings

	closeOnce sync.Once
	closeErr  error
}

// secretSentinels names the password the sentinels require of clients.
const secretSentinels = "sentinels"

// Start starts a lab of the given topology and returns once it is ready:
// replicas synced, sentinels agreed, cluster slots covered. On failure it
// stops what it started.
func Start(ctx context.Context, topology string, opts Options) (*Lab, error) {
	if topology != Sentinel && topology != Cluster {
		return nil, fmt.Errorf("lab: unknown topology %q (want %s or %s)", topology, Sentinel, Cluster)
	}
	files := opts.Files
	if files == (Files{}) {
		files = DeployFiles()
	}
	dir, err := os.MkdirTemp(opts.Dir, "tiercache-lab-"+topology+"-")
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	l := &Lab{Topology: topology, Dir: dir, files: files, keep: opts.KeepDir, keepBind: opts.KeepBind, passwords: map[string]string{},
		secrets: filepath.Join(dir, "secrets"), namespace: opts.Namespace}
	if l.namespace == "" {
		l.namespace = defaultNamespace
	}
	ok := false
	defer func() {
		if !ok {
			l.Close()
		}
	}()
	if opts.Secrets != "" {
		l.secrets = opts.Secrets
		err = l.readSecrets()
	} else {
		err = l.writeSecrets()
	}
	if err != nil {
		return nil, err
	}
	if topology == Sentinel {
		err = l.startSentinel(ctx)
	} else {
		err = l.startCluster(ctx)
	}
	if err != nil {
		return nil, err
	}
	ok = true
	return l, nil
}

// defaultNamespace is the namespace that deploy/acl.conf lets the
// tiercache user touch.
const defaultNamespace = "tiercache"

// secretUsers returns the users (and "sentinels") a lab of this topology
// needs passwords for.
func (l *Lab) secretUsers() []string {
	users := []string{UserTiercache, UserAdmin, userReplica}
	if l.Topology == Sentinel {
		users = append(users, userSentinel, secretSentinels)
	}
	return users
}

// readSecrets reads the passwords and users.acl of a directory made by
// deploy/make-secrets.sh, and installs the ACL file as it is.
func (l *Lab) readSecrets() error {
	for _, u := range l.secretUsers() {
		b, err := os.ReadFile(l.PasswordFile(u))
		if err != nil {
			return fmt.Errorf("lab: %w", err)
		}
		l.passwords[u] = strings.TrimRight(string(b), "\r\n")
	}
	acl, err := os.ReadFile(filepath.Join(l.secrets, "users.acl"))
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if err := os.WriteFile(l.aclPath(), acl, 0o600); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return nil
}

// writeSecrets picks the passwords, writes them under secrets/ and
// renders the ACL file.
func (l *Lab) writeSecrets() error {
	if err := os.MkdirAll(l.secrets, 0o700); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	acl := make(map[string]string)
	for _, u := range l.secretUsers() {
		pw := newPassword()
		l.passwords[u] = pw
		if u != secretSentinels {
			acl[u] = pw
		}
		if err := os.WriteFile(l.PasswordFile(u), []byte(pw+"\n"), 0o600); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
	}
	text, err := RenderACL(l.files.ACL, acl)
	if err != nil {
		return err
	}
	if err := os.WriteFile(l.aclPath(), []byte(text), 0o600); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return nil
}

func (l *Lab) aclPath() string { return filepath.Join(l.Dir, "users.acl") }

// PasswordFile returns the file that holds the password of an ACL user
// ("tiercache", "admin") or, for "sentinels", the password the sentinels
// require. The password is followed by a newline.
func (l *Lab) PasswordFile(user string) string {
	return filepath.Join(l.secrets, user+".password")
}

// Password returns the password of an ACL user, or "sentinels".
func (l *Lab) Password(user string) string { return l.passwords[user] }

// dataConfig renders redis-production.conf for a data node on port in dir
// with the extra directives. Every data node can replicate, because a
// master turns into a replica after a failover.
func (l *Lab) dataConfig(dir string, port int, extra ...directive) string {
	d := append(l.common(dir, port),
		set("aclfile", l.aclPath()),
		set("masteruser", userReplica),
		set("masterauth", l.passwords[userReplica]))
	return renderConfig(l.files.RedisConf, append(d, extra...))
}

// common returns the directives every node gets: its port and directory
// and, unless KeepBind is set, a loopback bind address.
func (l *Lab) common(dir string, port int) []directive {
	d := []directive{set("port", strconv.Itoa(port)), set("dir", dir)}
	if !l.keepBind {
		d = append(d, set("bind", "127.0.0.1", "-::1"))
	}
	return d
}

// startData starts a data node.
func (l *Lab) startData(ctx context.Context, name string, bus bool, extra ...directive) (*Node, error) {
	return startNode(ctx, l.Dir, name, "redis-server", bus, UserAdmin, l.passwords[UserAdmin],
		func(dir string, port int) string { return l.dataConfig(dir, port, extra...) })
}

// Setting is one variable of the environment that connects tiercache to
// the lab.
type Setting struct {
	Name, Value string
}

// Settings returns the environment that connects tiercache (serve, or
// tiercache.OptionsFromEnv) to the lab as the "tiercache" ACL user.
// Passwords are given as files, never as values.
func (l *Lab) Settings() []Setting {
	var s []Setting
	if l.Topology == Sentinel {
		s = append(s,
			Setting{"REDIS_SENTINEL_HOSTS", strings.Join(addrs(l.Sentinels), ",")},
			Setting{"REDIS_SERVICE_NAME", MasterName},
			Setting{"REDIS_SENTINEL_PASSWORD_FILE", l.PasswordFile(secretSentinels)})
	} else {
		s = append(s,
			Setting{"REDIS_URL", "redis://" + l.Data[0].Addr},
			Setting{"REDIS_CLUSTER_ENABLED", "true"},
			Setting{"REDIS_CLUSTER_NODES", strings.Join(addrs(l.Data), ",")})
	}
	return append(s,
		Setting{"REDIS_USERNAME", UserTiercache},
		Setting{"REDIS_PASSWORD_FILE", l.PasswordFile(UserTiercache)},
		Setting{"CACHE_NAMESPACE", l.namespace})
}

func addrs(nodes []*Node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.Addr
	}
	return out
}

// Nodes returns every node: sentinels first, then data nodes.
func (l *Lab) Nodes() []*Node {
	return append(append([]*Node(nil), l.Sentinels...), l.Data...)
}

// Close stops every node gracefully, sentinels first so that no failover
// starts while the data nodes stop, and then removes the lab's directory
// unless Options.KeepDir was set. Calling it again returns the first
// result.
func (l *Lab) Close() error {
	l.closeOnce.Do(func() {
		errs := stopAll(l.Sentinels)
		// Replicas go before masters: a master stopping while replicas
		// are connected waits for them to catch up (shutdown-timeout).
		replicas, others := l.splitReplicas()
		errs = append(errs, stopAll(replicas)...)
		errs = append(errs, stopAll(others)...)
		if !l.keep {
			errs = append(errs, os.RemoveAll(l.Dir))
		}
		l.closeErr = errors.Join(errs...)
	})
	return l.closeErr
}

// splitReplicas returns the data nodes that report role:slave, and the
// others (masters, and nodes that do not answer).
func (l *Lab) splitReplicas() (replicas, others []*Node) {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	for _, n := range l.Data {
		if !n.Running() {
			continue
		}
		if info, err := n.Info(ctx, "replication"); err == nil && info["role"] == "slave" {
			replicas = append(replicas, n)
		} else {
			others = append(others, n)
		}
	}
	return replicas, others
}

// stopAll stops the nodes in parallel and returns their errors.
func stopAll(nodes []*Node) []error {
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { errs[i] = n.Stop() })
	}
	wg.Wait()
	return errs
}
