package confcheck

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// aclUser is what the checks need to know of an ACL user.
type aclUser struct {
	name        string
	on          bool
	nopass      bool
	hasPassword bool
	placeholder bool     // its only password hash is deploy/acl.conf's zeros
	rules       []string // command rules (+..., -..., allcommands, ...), in order
}

// placeholderHash is the hash deploy/acl.conf ships for every user.
const placeholderHash = "#0000000000000000000000000000000000000000000000000000000000000000"

// parseACL reads "user <name> <rules>..." lines. Later lines for the same
// user add to its rules, as ACL SETUSER does.
func parseACL(lines []string) (map[string]*aclUser, []string) {
	users := make(map[string]*aclUser)
	var errs []string
	for i, line := range lines {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if f[0] != "user" || len(f) < 2 {
			errs = append(errs, fmt.Sprintf("ACL line %d does not start with \"user <name>\"", i+1))
			continue
		}
		u := users[f[1]]
		if u == nil {
			u = &aclUser{name: f[1]}
			users[f[1]] = u
		}
		for _, r := range f[2:] {
			u.apply(r)
		}
	}
	return users, errs
}

func (u *aclUser) apply(r string) {
	switch lr := strings.ToLower(r); {
	case lr == "on":
		u.on = true
	case lr == "off":
		u.on = false
	case lr == "nopass":
		u.nopass, u.hasPassword, u.placeholder = true, false, false
	case lr == "resetpass":
		u.nopass, u.hasPassword, u.placeholder = false, false, false
	case lr == "reset":
		*u = aclUser{name: u.name}
	case strings.HasPrefix(r, ">") || strings.HasPrefix(r, "#"):
		if !u.hasPassword || u.placeholder {
			u.placeholder = r == placeholderHash
		}
		u.hasPassword, u.nopass = true, false
	case lr == "allcommands" || lr == "nocommands" || strings.HasPrefix(r, "+") || strings.HasPrefix(r, "-"):
		u.rules = append(u.rules, lr)
	}
}

// dangerous lists commands that an application never needs and that can
// destroy data or the server, with their ACL categories.
var dangerous = []struct {
	name string
	cats []string
	// destructive commands lose data or stop the server: WARN even for
	// an administrator.
	destructive bool
}{
	{"flushall", []string{"keyspace", "write", "slow", "dangerous"}, true},
	{"flushdb", []string{"keyspace", "write", "slow", "dangerous"}, true},
	{"debug", []string{"admin", "slow", "dangerous"}, true},
	{"shutdown", []string{"admin", "slow", "dangerous"}, false},
	{"config", []string{"admin", "slow", "dangerous"}, false},
	{"keys", []string{"keyspace", "read", "slow", "dangerous"}, false},
	{"eval", []string{"slow", "scripting"}, false},
	{"module", []string{"admin", "slow", "dangerous"}, false},
}

// offByDefault maps commands that Redis 7 refuses to every client unless
// a setting enables them, to that setting.
var offByDefault = map[string]string{"debug": "enable-debug-command", "module": "enable-module-command"}

// commandOff reports whether Redis refuses cmd whatever the user.
func commandOff(c *config, cmd string) bool {
	setting, ok := offByDefault[cmd]
	if !ok {
		return false
	}
	v := strings.ToLower(c.value(setting, "no"))
	return v != "yes" && v != "local"
}

// allows reports whether u may run the whole command (every subcommand).
func (u *aclUser) allows(cmd string, cats []string) bool {
	ok := false
	for _, r := range u.rules {
		switch {
		case r == "allcommands" || r == "+@all":
			ok = true
		case r == "nocommands" || r == "-@all":
			ok = false
		case r == "+"+cmd:
			ok = true
		case r == "-"+cmd:
			ok = false
		case strings.HasPrefix(r, "+@") && slices.Contains(cats, r[2:]):
			ok = true
		case strings.HasPrefix(r, "-@") && slices.Contains(cats, r[2:]):
			ok = false
		case strings.HasPrefix(r, "-"+cmd+"|"):
			ok = false // part of it is denied
		}
	}
	return ok
}

// checkDangerous: no client that the application (or anyone without a
// named account) uses may run the dangerous commands.
func checkDangerous(c *config, users map[string]*aclUser) []Finding {
	if users != nil {
		return checkDangerousACL(c, users)
	}
	renamed := make(map[string]bool)
	for _, d := range c.all("rename-command") {
		if len(d.args) == 2 {
			renamed[strings.ToLower(d.args[0])] = true
		}
	}
	var open []string
	for _, d := range dangerous {
		if commandOff(c, d.name) || renamed[d.name] {
			continue
		}
		open = append(open, strings.ToUpper(d.name))
	}
	if len(open) == 0 {
		return []Finding{{OK, "dangerous-commands", "dangerous commands are renamed"}}
	}
	sev := Error
	if len(renamed) > 0 {
		sev = Warn
	}
	verb := " are"
	if len(open) == 1 {
		verb = " is"
	}
	return []Finding{{sev, "dangerous-commands", strings.Join(open, ", ") + verb + " open to every client: deny them with ACL users (deploy/acl.conf) or rename-command"}}
}

func checkDangerousACL(c *config, users map[string]*aclUser) []Finding {
	var f []Finding
	if _, ok := users["default"]; !ok {
		// Not defined: the default user is on, with every command.
		users = maps.Clone(users)
		users["default"] = &aclUser{name: "default", on: true, rules: []string{"allcommands"}}
	}
	for _, name := range sortedNames(users) {
		u := users[name]
		if !u.on {
			continue
		}
		var all, destructive []string
		for _, d := range dangerous {
			if commandOff(c, d.name) {
				continue
			}
			if u.allows(d.name, d.cats) {
				all = append(all, strings.ToUpper(d.name))
				if d.destructive {
					destructive = append(destructive, strings.ToUpper(d.name))
				}
			}
		}
		switch {
		case name == "default" && len(all) > 0:
			f = append(f, Finding{Error, "dangerous-commands", "the default user may run " + strings.Join(all, ", ") + ": turn it off or deny them"})
		case len(destructive) > 0:
			f = append(f, Finding{Warn, "dangerous-commands", "user " + name + " may run " + strings.Join(destructive, ", ") + ": keep such a user for emergencies, or deny them"})
		case len(all) > 0:
			f = append(f, Finding{OK, "dangerous-commands", "user " + name + " is an administrator (" + strings.Join(all, ", ") + "); keep its password for operators"})
		}
	}
	if len(f) == 0 || !slices.ContainsFunc(f, func(x Finding) bool { return x.Severity != OK }) {
		f = append([]Finding{{OK, "dangerous-commands", "no user but administrators may run FLUSHALL, FLUSHDB, CONFIG, KEYS, EVAL, SHUTDOWN, MODULE"}}, f...)
	}
	return f
}

func sortedNames(users map[string]*aclUser) []string {
	names := make([]string, 0, len(users))
	for n := range users {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
