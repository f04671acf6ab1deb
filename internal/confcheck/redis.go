package confcheck

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// checkRedis runs the checklist of a data node's configuration.
func checkRedis(c *config, opts Options) []Finding {
	var f []Finding
	f = append(f, checkMemory(c)...)
	f = append(f, checkPersistence(c)...)
	users, aclFindings, unread := loadUsers(c, opts)
	if unread {
		// ACL users are in use, but which ones is unknown here.
		f = append(f, aclFindings...)
		f = append(f, checkNetwork(c, true)...)
		f = append(f, Finding{Warn, "dangerous-commands", "not checked: the users are in the unreadable aclfile"})
	} else {
		f = append(f, checkAuth(c, users)...)
		f = append(f, aclFindings...)
		f = append(f, checkNetwork(c, authEnabled(c, users))...)
		f = append(f, checkDangerous(c, users)...)
	}
	f = append(f, checkReplication(c)...)
	return f
}

// checkMemory: a cache needs a memory limit and a policy that evicts.
func checkMemory(c *config) []Finding {
	var f []Finding
	mm := c.value("maxmemory", "0")
	n, err := parseMemory(mm)
	switch {
	case err != nil:
		f = append(f, Finding{Error, "memory", fmt.Sprintf("maxmemory %q is not a size", mm)})
	case n == 0:
		f = append(f, Finding{Error, "memory", "no maxmemory: Redis grows until the host runs out of memory; set it to about 60-70% of the memory available"})
	default:
		f = append(f, Finding{OK, "memory", "maxmemory " + mm})
	}
	policy := strings.ToLower(c.value("maxmemory-policy", "noeviction"))
	switch {
	case policy == "noeviction":
		f = append(f, Finding{Error, "memory", "maxmemory-policy noeviction: writes fail once memory is full; a cache wants allkeys-lru or allkeys-lfu"})
	case strings.HasPrefix(policy, "volatile-"):
		f = append(f, Finding{Warn, "memory", "maxmemory-policy " + policy + ": keys without a TTL are never evicted; a cache wants allkeys-lru or allkeys-lfu"})
	case policy == "allkeys-random":
		f = append(f, Finding{Warn, "memory", "maxmemory-policy allkeys-random evicts hot keys as readily as cold ones; prefer allkeys-lru or allkeys-lfu"})
	case policy == "allkeys-lru" || policy == "allkeys-lfu":
		f = append(f, Finding{OK, "memory", "maxmemory-policy " + policy})
	default:
		f = append(f, Finding{Error, "memory", fmt.Sprintf("maxmemory-policy %q is unknown", policy)})
	}
	if s, err := strconv.Atoi(c.value("maxmemory-samples", "5")); err != nil || s < 5 {
		f = append(f, Finding{Warn, "memory", "maxmemory-samples below 5 makes eviction less accurate"})
	}
	return f
}

// parseMemory parses a Redis memory size: 100, 1k (1000), 1kb (1024),
// 2gb, ...
func parseMemory(s string) (uint64, error) {
	s = strings.ToLower(s)
	units := []struct {
		suffix string
		mul    uint64
	}{{"kb", 1 << 10}, {"mb", 1 << 20}, {"gb", 1 << 30}, {"k", 1e3}, {"m", 1e6}, {"g", 1e9}, {"b", 1}}
	mul := uint64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mul = strings.TrimSuffix(s, u.suffix), u.mul
			break
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, err
	}
	return n * mul, nil
}

// checkPersistence: RDB snapshots for backups and restarts, AOF fsync'd
// every second.
func checkPersistence(c *config) []Finding {
	var f []Finding
	rdb := false
	for _, d := range c.all("save") {
		rdb = len(d.args) > 0 && d.args[0] != ""
	}
	saves := c.all("save")
	if len(saves) == 0 {
		rdb = true // Redis's default save points
	}
	aof := strings.EqualFold(c.value("appendonly", "no"), "yes")
	switch {
	case !rdb && !aof:
		f = append(f, Finding{Warn, "persistence", "no RDB snapshots and no AOF: a restart empties the cache, tag versions included, and there is nothing to back up"})
	case rdb:
		f = append(f, Finding{OK, "persistence", "RDB snapshots on"})
	default:
		f = append(f, Finding{Warn, "persistence", "no RDB snapshots: AOF alone gives no compact file to back up"})
	}
	if aof {
		switch fs := strings.ToLower(c.value("appendfsync", "everysec")); fs {
		case "everysec":
			f = append(f, Finding{OK, "persistence", "AOF on, fsync every second"})
		case "always":
			f = append(f, Finding{Warn, "persistence", "appendfsync always: every write waits for the disk; everysec loses at most a second"})
		default:
			f = append(f, Finding{Warn, "persistence", "appendfsync " + fs + ": the OS decides when writes reach the disk; everysec loses at most a second"})
		}
	}
	return f
}

// authEnabled reports whether the default user needs a password or is off.
func authEnabled(c *config, users map[string]*aclUser) bool {
	if u, ok := users["default"]; ok {
		return !u.on || (u.hasPassword && !u.nopass)
	}
	return c.value("requirepass", "") != ""
}

// placeholders are passwords from examples that must never reach
// production.
var placeholders = []string{"[password]", "password", "foobared", "changeme", "change-me", "secret", "redis"}

// checkAuth: every client must authenticate.
func checkAuth(c *config, users map[string]*aclUser) []Finding {
	pw := c.value("requirepass", "")
	lower := strings.ToLower(pw)
	switch {
	case pw != "" && (slices.Contains(placeholders, lower) || strings.Contains(lower, "change")):
		return []Finding{{Error, "auth", "requirepass is a placeholder from an example; set a long random password"}}
	case authEnabled(c, users) && users["default"] != nil && !users["default"].on:
		return []Finding{{OK, "auth", "the default user is off: every client must log in as an ACL user"}}
	case authEnabled(c, users):
		f := []Finding{{OK, "auth", "clients must authenticate"}}
		if pw != "" && len(pw) < 16 {
			f = append(f, Finding{Warn, "auth", "requirepass is shorter than 16 characters; Redis answers password guesses very fast"})
		}
		return f
	}
	return []Finding{{Error, "auth", "no authentication: set requirepass, or ACL users with the default user off (deploy/acl.conf)"}}
}

// loadUsers reads the ACL users: "user" lines of the configuration, or the
// aclfile (opts.ACLFile first). A nil map means the configuration defines
// no users; unread means that it names an aclfile that cannot be read.
func loadUsers(c *config, opts Options) (users map[string]*aclUser, f []Finding, unread bool) {
	var lines []string
	for _, d := range c.all("user") {
		lines = append(lines, strings.Join(append([]string{"user"}, d.args...), " "))
	}
	path := opts.ACLFile
	if path == "" {
		if p := c.value("aclfile", ""); p != "" {
			path = p
			if !filepath.IsAbs(path) {
				// Redis reads a relative aclfile from its working
				// directory, which "dir" sets; without one, the
				// configuration's own directory is the best guess.
				base := c.dir
				if d := c.value("dir", ""); filepath.IsAbs(d) {
					base = d
				}
				path = filepath.Join(base, path)
			}
		}
	}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, []Finding{{Warn, "auth", fmt.Sprintf("aclfile %s is not readable here, so its users are not checked (give a copy with --acl): %v", path, unwrapPath(err))}}, true
		}
		lines = append(lines, strings.Split(string(data), "\n")...)
		f = append(f, Finding{OK, "auth", "ACL users from " + path})
	}
	if len(lines) == 0 {
		return nil, nil, false
	}
	users, errs := parseACL(lines)
	for _, e := range errs {
		f = append(f, Finding{Error, "auth", e})
	}
	for _, name := range sortedNames(users) {
		u := users[name]
		switch {
		case u.on && u.nopass:
			f = append(f, Finding{Error, "auth", "user " + name + " is on with nopass: anyone can log in as it"})
		case u.on && u.placeholder:
			f = append(f, Finding{Warn, "auth", "user " + name + " has the placeholder password hash: nobody can log in as it until its real hash is set"})
		case u.on && !u.hasPassword:
			f = append(f, Finding{Warn, "auth", "user " + name + " is on without a password: nobody can log in as it"})
		}
	}
	return users, f, false
}

// unwrapPath drops the path from an os error, which the message already
// names.
func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// checkNetwork: protected mode and the listening addresses.
func checkNetwork(c *config, auth bool) []Finding {
	var f []Finding
	protected := !strings.EqualFold(c.value("protected-mode", "yes"), "no")
	bind, explicit := c.last("bind")
	addrs := "every interface"
	if explicit {
		addrs = strings.Join(bind.args, " ")
	}
	loopback := explicit && !slices.ContainsFunc(bind.args, func(a string) bool {
		a = strings.TrimPrefix(a, "-")
		return a != "127.0.0.1" && a != "::1" && a != "localhost"
	})
	switch {
	case !auth && !protected && !loopback:
		f = append(f, Finding{Error, "network", "protected-mode no without authentication, listening on " + addrs + ": anyone who reaches the port owns the data"})
	case !protected:
		f = append(f, Finding{Warn, "network", "protected-mode no: keep it yes as a safety net should authentication ever be turned off"})
	default:
		f = append(f, Finding{OK, "network", "protected-mode yes"})
	}
	if loopback {
		f = append(f, Finding{OK, "network", "listens on loopback only (" + addrs + ")"})
	} else {
		f = append(f, Finding{OK, "network", "listens on " + addrs + ": keep the port reachable only from the application's network"})
	}
	if port, tls := c.value("port", "6379"), c.value("tls-port", "0"); tls != "0" && port != "0" {
		f = append(f, Finding{Warn, "network", "tls-port " + tls + " is set but plain port " + port + " stays open: set port 0 to require TLS"})
	}
	return f
}

// checkReplication: an isolated master must stop acknowledging writes.
func checkReplication(c *config) []Finding {
	n, _ := strconv.Atoi(c.value("min-replicas-to-write", "0"))
	if n < 1 {
		return []Finding{{Warn, "replication", "min-replicas-to-write 0: a master cut off from its replicas keeps acknowledging writes that a failover then discards (see docs/reliability.md)"}}
	}
	lag := c.value("min-replicas-max-lag", "10")
	return []Finding{{OK, "replication", fmt.Sprintf("writes need %d replica(s) within %ss", n, lag)}}
}
