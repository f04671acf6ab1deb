package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/tiercache/tiercache"
)

// fleetRow is one instance's line of top --fleet.
type fleetRow struct {
	Time string `json:"time"`
	tiercache.FleetMember
}

// runFleet is top --fleet: every refresh, GET /v1/fleet from the first
// service that answers, and one line per instance.
func (c *topCmd) runFleet(ctx context.Context, s streams, backends []*httpBackend, live bool) error {
	tick := time.NewTicker(c.Interval)
	defer tick.Stop()
	var lastErr error
	answered := false
	for n := 1; ; n++ {
		f, from, err := c.fleet(ctx, backends)
		if err != nil {
			lastErr = err
			fmt.Fprintf(s.out, "%s  ERROR %v\n", time.Now().UTC().Format("15:04:05"), err)
		} else {
			answered = true
			c.printFleet(s.out, f, from, live, n == 1)
		}
		if c.Count > 0 && n >= c.Count {
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
	if !answered {
		return fail("no service answered GET /v1/fleet: %v", lastErr)
	}
	return nil
}

// fleet reads /v1/fleet from the first backend that answers.
func (c *topCmd) fleet(ctx context.Context, backends []*httpBackend) (tiercache.Fleet, string, error) {
	var errs []string
	for _, b := range backends {
		rctx, cancel := context.WithTimeout(ctx, max(c.Interval, time.Second))
		_, data, err := b.do(rctx, http.MethodGet, "/v1/fleet", "", nil, http.StatusOK)
		cancel()
		var f tiercache.Fleet
		if err == nil {
			err = json.Unmarshal(data, &f)
		}
		if err == nil {
			return f, b.base, nil
		}
		errs = append(errs, err.Error())
	}
	return tiercache.Fleet{}, "", fmt.Errorf("%s", strings.Join(errs, "; "))
}

const fleetHeader = "time      instance                      state    health     version     epoch        L1 keys  queue  resets  lag p99ms  missed  seen ago  address  flags"

func (c *topCmd) printFleet(w io.Writer, f tiercache.Fleet, from string, live, first bool) {
	now := time.Now().UTC().Format("15:04:05")
	if c.json() {
		for _, m := range f.Members {
			_ = json.NewEncoder(w).Encode(fleetRow{Time: now, FleetMember: m})
		}
		return
	}
	var b strings.Builder
	if live {
		b.WriteString("\x1b[H\x1b[2J") // home, clear
		fmt.Fprintf(&b, "tiercache top --fleet: namespace %s from %s, every %v; Ctrl-C to quit\n", f.Namespace, from, c.Interval)
		fmt.Fprintf(&b, "%d live, %d silent, %d stopped, %d disagreeing\n\n", f.Live, f.Silent, f.Stopped, f.Disagreeing)
	}
	if live || first {
		b.WriteString(fleetHeader + "\n")
	}
	for _, m := range f.Members {
		id := m.ID
		if m.Self {
			id += "*"
		}
		var flags []string
		if m.State == "silent" {
			flags = append(flags, fmt.Sprintf("SILENT for %v", m.Age.Round(time.Second)))
		}
		flags = append(flags, m.Disagrees...)
		lag, missed := "off", "-"
		if m.CanaryInterval > 0 {
			lag, missed = fmt.Sprintf("%.3f", ms(m.CoherenceLagP99)), fmt.Sprint(m.MarkersMissed)
		}
		fmt.Fprintf(&b, "%-8s  %-28s  %-7s  %-9s  %-10s  %-11d  %7d  %5d  %6d  %9s  %6s  %8s  %s  %s\n",
			now, id, m.State, m.Health, cmpOr(m.Version, "-"), m.Epoch, m.L1Entries, m.QueueLength, m.LinkResets,
			lag, missed, m.Age.Round(time.Millisecond), cmpOr(m.Address, "-"), strings.Join(flags, "; "))
	}
	_, _ = io.WriteString(w, b.String())
}
