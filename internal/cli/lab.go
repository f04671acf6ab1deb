package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/tiercache/tiercache/internal/lab"
)

// labCmd is "tiercache lab [flags] sentinel|cluster"; it runs until ctx
// is cancelled.
type labCmd struct {
	Topology []string `arg:"" optional:"" name:"topology" help:"sentinel or cluster."`
	Deploy   string   `name:"deploy" placeholder:"DIR" help:"Read redis-production.conf, sentinel.conf and acl.conf from DIR (default: the copies built into tiercache)."`
	Dir      string   `name:"dir" placeholder:"DIR" help:"Create the lab's directory under DIR (default: the system's temporary directory)."`
	Keep     bool     `name:"keep" help:"Keep the lab's directory (logs, data, configuration) after it stops."`
}

// Help is the command's description in its --help.
func (c *labCmd) Help() string {
	return "Usage: tiercache lab [flags] sentinel|cluster\n\nStarts a Redis Sentinel group (a master, 2 replicas, 3 sentinels) " +
		"or a Redis Cluster (3 masters, 3 replicas) from local redis-server processes on loopback, configured by the " +
		"deploy files, prints the environment that connects tiercache to it, and stops it on Ctrl-C."
}

func (c *labCmd) Run(ctx context.Context, s streams) error {
	if len(c.Topology) != 1 || (c.Topology[0] != lab.Sentinel && c.Topology[0] != lab.Cluster) {
		printUsage(s.err, []string{"lab"})
		return usage("want one topology, sentinel or cluster; got %q", c.Topology)
	}
	topology := c.Topology[0]
	opts := lab.Options{Dir: c.Dir, KeepDir: c.Keep}
	if c.Deploy != "" {
		files, err := lab.ReadFiles(c.Deploy)
		if err != nil {
			return fail("%v", err)
		}
		opts.Files = files
	}
	fmt.Fprintf(s.err, "tiercache lab: starting a %s lab...\n", topology)
	l, err := lab.Start(ctx, topology, opts)
	if err != nil {
		return fail("%v", err)
	}
	fmt.Fprint(s.out, describeLab(l))
	<-ctx.Done()
	fmt.Fprintln(s.err, "tiercache lab: stopping...")
	if err := l.Close(); err != nil {
		return fail("stop: %v", err)
	}
	fmt.Fprintln(s.err, "tiercache lab: stopped")
	return nil
}

// describeLab returns the settings, as shell-style KEY=VALUE lines, and
// how to reach the nodes and run failover drills, as comments.
func describeLab(l *lab.Lab) string {
	var b strings.Builder
	what := "Redis Sentinel: a master, 2 replicas and 3 sentinels"
	if l.Topology == lab.Cluster {
		what = "Redis Cluster: 3 masters and 3 replicas"
	}
	fmt.Fprintf(&b, "# tiercache lab: %s, from the deploy files, in %s\n", what, l.Dir)
	for _, n := range l.Notes {
		fmt.Fprintf(&b, "# note: %s\n", n)
	}
	b.WriteString("# Connect tiercache (tiercache serve, or tiercache.OptionsFromEnv) with:\n")
	for _, st := range l.Settings() {
		fmt.Fprintf(&b, "%s=%s\n", st.Name, st.Value)
	}
	b.WriteString("#\n# Nodes (redis-cli as the administrator: REDISCLI_AUTH=\"$(cat " + l.PasswordFile(lab.UserAdmin) + ")\" redis-cli --user admin -p PORT):\n")
	for _, n := range l.Nodes() {
		fmt.Fprintf(&b, "#   %-11s %s  pid %d\n", n.Name, n.Addr, n.PID())
	}
	b.WriteString("# Failover drills:\n")
	if l.Topology == lab.Sentinel {
		sn := l.Sentinels[0]
		fmt.Fprintf(&b, "#   forced:  REDISCLI_AUTH=\"$(cat %s)\" redis-cli -p %d SENTINEL FAILOVER %s\n",
			l.PasswordFile("sentinels"), sn.Port, lab.MasterName)
		fmt.Fprintf(&b, "#   crash:   kill -9 %d   (the master; a new one is promoted after down-after-milliseconds)\n", l.Data[0].PID())
	} else {
		fmt.Fprintf(&b, "#   forced:  on a replica: redis-cli --user admin -p PORT CLUSTER FAILOVER\n")
		fmt.Fprintf(&b, "#   crash:   kill -9 the pid of a master; its replica takes over after cluster-node-timeout\n")
	}
	b.WriteString("# Press Ctrl-C to stop the lab.\n")
	return b.String()
}
