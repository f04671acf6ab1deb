package redistest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tiercache/tiercache/deploy"
)

// The ACL users of deploy/acl.conf that a Production gives a password.
// The others (sentinel, exporter) keep the file's placeholder and stay
// locked.
const (
	// ProductionUser is the least-privileged user tiercache connects as:
	// its keys are ~tiercache:* and ~tiercache#*.
	ProductionUser = "tiercache"
	// ProductionAdmin is the administrator, which test set-up and checks
	// use.
	ProductionAdmin = "admin"
	// productionReplicaUser is the replica's masteruser.
	productionReplicaUser = "replica"
)

// aclPlaceholder is the password hash deploy/acl.conf ships for every
// user. No password hashes to it.
const aclPlaceholder = "#0000000000000000000000000000000000000000000000000000000000000000"

// Production is a master and one replica, each a redis-server started from
// deploy/redis-production.conf as an operator would start it: the file
// itself with only --port and --dir on the command line (and, on the
// replica, --replicaof, --masteruser and --masterauth, which the file
// leaves to deploy time). The ACL file the configuration names
// (users.acl, in the data directory) is deploy/acl.conf with random
// passwords for the users tiercache, admin and replica.
//
// The file makes a master refuse writes without a replica
// (min-replicas-to-write 1): StartProduction returns once the replica has
// synced and the master counts it.
type Production struct {
	// Master and Replica are the two nodes. Their Do and Info
	// authenticate as ProductionAdmin, for a test's set-up and checks.
	Master, Replica *Server
	// Addr is the master's address, where tiercache connects.
	Addr string
	// Username and Password are the credentials of ProductionUser.
	Username, Password string
	// AdminPassword is the password of ProductionAdmin.
	AdminPassword string
	passwords     map[string]string
}

// StartProduction starts the master and the replica and returns once the
// replica has synced. The caller must Close it.
func StartProduction() (*Production, error) {
	p := &Production{Username: ProductionUser, passwords: make(map[string]string)}
	for _, user := range []string{ProductionUser, ProductionAdmin, productionReplicaUser} {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("redistest: %w", err)
		}
		p.passwords[user] = hex.EncodeToString(b[:])
	}
	p.Password, p.AdminPassword = p.passwords[ProductionUser], p.passwords[ProductionAdmin]
	acl, err := renderACL(deploy.ACL, p.passwords)
	if err != nil {
		return nil, err
	}
	if p.Master, err = p.startNode(acl); err != nil {
		return nil, err
	}
	p.Addr = p.Master.Addr
	p.Replica, err = p.startNode(acl, "--replicaof", "127.0.0.1", strconv.Itoa(p.Master.Port),
		"--masteruser", productionReplicaUser, "--masterauth", p.passwords[productionReplicaUser])
	if err == nil {
		err = p.waitReplica()
	}
	if err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// NewProduction is StartProduction for a test: it calls Require, fails the
// test when the nodes do not start, and closes them in t.Cleanup.
func NewProduction(t testing.TB) *Production {
	t.Helper()
	Require(t)
	p, err := StartProduction()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// startNode starts one node from the configuration file, as it is.
func (p *Production) startNode(acl string, extra ...string) (*Server, error) {
	return start(launch{
		bin:      "redis-server",
		username: ProductionAdmin,
		password: p.AdminPassword,
		args: func(dir string, port int) ([]string, error) {
			if err := os.WriteFile(filepath.Join(dir, "users.acl"), []byte(acl), 0o600); err != nil {
				return nil, err
			}
			path := filepath.Join(dir, "redis-production.conf")
			if err := os.WriteFile(path, []byte(deploy.RedisConf), 0o600); err != nil {
				return nil, err
			}
			return append([]string{path, "--port", strconv.Itoa(port), "--dir", dir}, extra...), nil
		},
	})
}

// renderACL returns the ACL file tmpl with the placeholder hash of each
// user in passwords replaced by the hash of its password.
func renderACL(tmpl string, passwords map[string]string) (string, error) {
	var b strings.Builder
	seen := 0
	for line := range strings.Lines(tmpl) {
		f := strings.Fields(line)
		if pw, ok := passwords[fieldAt(f, 1)]; ok && fieldAt(f, 0) == "user" {
			if !strings.Contains(line, " "+aclPlaceholder+" ") {
				return "", fmt.Errorf("redistest: acl.conf: user %s has no placeholder hash", f[1])
			}
			sum := sha256.Sum256([]byte(pw))
			line = strings.Replace(line, " "+aclPlaceholder+" ", " #"+hex.EncodeToString(sum[:])+" ", 1)
			seen++
		}
		b.WriteString(line)
	}
	if seen != len(passwords) {
		return "", fmt.Errorf("redistest: acl.conf defines %d of the users %v", seen, slices.Sorted(maps.Keys(passwords)))
	}
	return b.String(), nil
}

func fieldAt(f []string, i int) string {
	if i < len(f) {
		return f[i]
	}
	return ""
}

// waitReplica waits until the replica has synced and the master counts it
// as a good replica, the condition min-replicas-to-write puts on writes.
func (p *Production) waitReplica() error {
	return poll(topologyTimeout, "production: wait for the replica", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), pollTimeout)
		defer cancel()
		info, err := p.Replica.InfoContext(ctx, "replication")
		if err != nil {
			return err
		}
		if info["master_link_status"] != "up" {
			return fmt.Errorf("replica: master_link_status:%s", info["master_link_status"])
		}
		if info, err = p.Master.InfoContext(ctx, "replication"); err != nil {
			return err
		}
		if info["min_slaves_good_slaves"] != "1" {
			return fmt.Errorf("master: min_slaves_good_slaves:%s", info["min_slaves_good_slaves"])
		}
		return nil
	})
}

// PasswordOf returns the password of the ACL user tiercache, admin or
// replica, and "" for a user that stays locked.
func (p *Production) PasswordOf(user string) string { return p.passwords[user] }

// ACLDenials returns the entries of ACL LOG on the master and the replica
// whose user is user (every entry when user is blank), one line each:
// "<addr>: username=... reason=... context=... object=... count=...".
// Redis logs there every command or key an ACL user was refused and every
// failed AUTH.
func (p *Production) ACLDenials(user string) ([]string, error) {
	var out []string
	for _, s := range []*Server{p.Master, p.Replica} {
		reply, err := s.Do("ACL", "LOG", "128")
		if err != nil {
			return nil, fmt.Errorf("redistest: ACL LOG on %s: %w", s.Addr, err)
		}
		entries, _ := reply.([]any)
		for _, e := range entries {
			m := make(map[string]string)
			kv, _ := e.([]any)
			for i := 0; i+1 < len(kv); i += 2 {
				m[fmt.Sprint(kv[i])] = fmt.Sprint(kv[i+1])
			}
			if user != "" && m["username"] != user {
				continue
			}
			var parts []string
			for _, k := range []string{"username", "reason", "context", "object", "count"} {
				parts = append(parts, k+"="+m[k])
			}
			out = append(out, s.Addr+": "+strings.Join(parts, " "))
		}
	}
	return out, nil
}

// Close stops the replica and the master and removes their directories.
// It may be called on a Production that failed to start half way.
func (p *Production) Close() {
	for _, s := range []*Server{p.Replica, p.Master} {
		if s != nil {
			s.Close()
		}
	}
}
