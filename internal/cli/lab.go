package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/tiercache/tiercache/internal/lab"
)

// runLab runs "tiercache lab [flags] sentinel|cluster" until ctx is
// cancelled.
func runLab(ctx context.Context, s streams, args []string) int {
	fs := newFlagSet("lab", "tiercache lab [flags] sentinel|cluster",
		"start a Redis Sentinel group (a master, 2 replicas, 3 sentinels) or a Redis Cluster "+
			"(3 masters, 3 replicas) from local redis-server processes on loopback, configured by the "+
			"deploy files, print the environment that connects tiercache to it, and stop it on Ctrl-C")
	var (
		deployDir, dir string
		keep           bool
	)
	fs.StringVar(&deployDir, "deploy", "", "read redis-production.conf, sentinel.conf and acl.conf from `dir` (default: the copies built into tiercache)")
	fs.StringVar(&dir, "dir", "", "create the lab's directory under `dir` (default: the system's temporary directory)")
	fs.BoolVar(&keep, "keep", false, "keep the lab's directory (logs, data, configuration) after it stops")
	if code, done := parseWithArgs(fs, args, s); done {
		return code
	}
	if fs.NArg() != 1 || (fs.Arg(0) != lab.Sentinel && fs.Arg(0) != lab.Cluster) {
		fmt.Fprintf(s.err, "tiercache lab: want one topology, sentinel or cluster, after the flags; got %q\n\n", fs.Args())
		fs.SetOutput(s.err)
		fs.Usage()
		return exitUsage
	}
	topology := fs.Arg(0)
	opts := lab.Options{Dir: dir, KeepDir: keep}
	if deployDir != "" {
		files, err := lab.ReadFiles(deployDir)
		if err != nil {
			fmt.Fprintf(s.err, "tiercache lab: %v\n", err)
			return exitError
		}
		opts.Files = files
	}
	fmt.Fprintf(s.err, "tiercache lab: starting a %s lab...\n", topology)
	l, err := lab.Start(ctx, topology, opts)
	if err != nil {
		fmt.Fprintf(s.err, "tiercache lab: %v\n", err)
		return exitError
	}
	fmt.Fprint(s.out, describeLab(l))
	<-ctx.Done()
	fmt.Fprintln(s.err, "tiercache lab: stopping...")
	if err := l.Close(); err != nil {
		fmt.Fprintf(s.err, "tiercache lab: stop: %v\n", err)
		return exitError
	}
	fmt.Fprintln(s.err, "tiercache lab: stopped")
	return exitOK
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
