package confcheck

import (
	"fmt"
	"strconv"
	"strings"
)

// checkSentinel runs the checklist of a sentinel's configuration.
func checkSentinel(c *config) []Finding {
	var f []Finding
	masters := 0
	for _, d := range c.all("sentinel") {
		if len(d.args) == 0 || !strings.EqualFold(d.args[0], "monitor") {
			continue
		}
		masters++
		if len(d.args) != 5 {
			f = append(f, Finding{Error, "quorum", fmt.Sprintf("line %d: want \"sentinel monitor <name> <host> <port> <quorum>\"", d.line)})
			continue
		}
		f = append(f, checkMaster(c, d.args[1], d.args[4])...)
	}
	if masters == 0 {
		f = append(f, Finding{Error, "quorum", "no \"sentinel monitor\" line: the sentinel watches nothing"})
	}
	auth := c.value("requirepass", "") != ""
	if auth {
		f = append(f, Finding{OK, "auth", "clients and other sentinels must authenticate"})
	} else {
		f = append(f, Finding{Warn, "auth", "no requirepass: anyone who reaches a sentinel can reconfigure it or force a failover; add requirepass at deploy time"})
	}
	f = append(f, checkNetwork(c, auth)...)
	for _, d := range c.all("sentinel") {
		if len(d.args) == 2 && strings.EqualFold(d.args[0], "deny-scripts-reconfig") && strings.EqualFold(d.args[1], "no") {
			f = append(f, Finding{Warn, "failover", "sentinel deny-scripts-reconfig no: anyone who reaches a sentinel can make it run any program"})
		}
	}
	return f
}

// checkMaster checks the settings of one monitored master set.
func checkMaster(c *config, name, quorumArg string) []Finding {
	var f []Finding
	q, err := strconv.Atoi(quorumArg)
	switch {
	case err != nil || q < 1:
		f = append(f, Finding{Error, "quorum", fmt.Sprintf("%s: quorum %q is not a positive number", name, quorumArg)})
	case q == 1:
		f = append(f, Finding{Error, "quorum", name + ": quorum 1 lets a single sentinel, maybe the one cut off from the others, declare the master down; use 2 of 3 sentinels"})
	default:
		f = append(f, Finding{OK, "quorum", fmt.Sprintf("%s: quorum %d (run at least %d sentinels, on separate hosts)", name, q, 2*q-1)})
	}
	down := masterSetting(c, "down-after-milliseconds", name, "30000")
	switch ms, err := strconv.Atoi(down); {
	case err != nil:
		f = append(f, Finding{Error, "failover", fmt.Sprintf("%s: down-after-milliseconds %q is not a number", name, down)})
	case ms < 1000:
		f = append(f, Finding{Warn, "failover", fmt.Sprintf("%s: down-after-milliseconds %d: a pause or a slow network can start a needless failover", name, ms)})
	case ms > 30000:
		f = append(f, Finding{Warn, "failover", fmt.Sprintf("%s: down-after-milliseconds %d: writes stop for that long before a failover starts", name, ms)})
	default:
		f = append(f, Finding{OK, "failover", fmt.Sprintf("%s: down after %d ms, failover-timeout %s ms, parallel-syncs %s",
			name, ms, masterSetting(c, "failover-timeout", name, "180000"), masterSetting(c, "parallel-syncs", name, "1"))})
	}
	if masterSetting(c, "auth-pass", name, "") == "" {
		f = append(f, Finding{Warn, "auth", name + ": no sentinel auth-pass: the data nodes must then accept sentinels without a password; add it (and auth-user) at deploy time"})
	} else {
		f = append(f, Finding{OK, "auth", name + ": sentinels authenticate to the data nodes"})
	}
	return f
}

// masterSetting returns the value of "sentinel <key> <master> <value>".
func masterSetting(c *config, key, master, def string) string {
	v := def
	for _, d := range c.all("sentinel") {
		if len(d.args) == 3 && strings.EqualFold(d.args[0], key) && d.args[1] == master {
			v = d.args[2]
		}
	}
	return v
}
