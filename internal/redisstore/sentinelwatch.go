package redisstore

import (
	"context"
	"crypto/tls"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// Following a Sentinel failover.
//
// rueidis's Sentinel client follows the master on the +switch-master event
// of the one sentinel it subscribes to. Only the sentinel that led the
// failover announces the switch at once; the others announce it once they
// have the leader's new configuration, from the hello messages sentinels
// exchange every 2 seconds. A client subscribed to one of those keeps
// sending to the dead master for up to 2 more seconds.
//
// So the store subscribes to +switch-master on every sentinel. When one
// reports a new master that the client does not use yet, the store builds
// a new client that asks that sentinel first, swaps it in, reports a lost
// tracking link (what the old client's connection tracked is no longer
// watched), and closes the old client.

// watchSentinels starts one watcher per sentinel of copt.
// The caller holds switchMu; Close ends them.
func (s *Store) watchSentinels(copt rueidis.ClientOption) {
	for _, addr := range copt.InitAddress {
		s.watchers.Add(1)
		go s.watchSentinel(s.bg, copt, addr)
	}
}

// watchSentinel listens to +switch-master on one sentinel until ctx ends,
// reconnecting with a backoff when the sentinel goes away.
func (s *Store) watchSentinel(ctx context.Context, copt rueidis.ClientOption, addr string) {
	defer s.watchers.Done()
	opt := sentinelOption(addr, copt.Sentinel.Username, copt.Sentinel.Password, copt.Sentinel.TLSConfig)
	opt.Dialer = copt.Sentinel.Dialer
	opt.DialCtxFn = copt.DialCtxFn
	master := copt.Sentinel.MasterSet
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		if c, err := rueidis.NewClient(opt); err == nil {
			backoff = 100 * time.Millisecond
			_ = c.Receive(ctx, c.B().Subscribe().Channel("+switch-master").Build(), func(m rueidis.PubSubMessage) {
				// <master name> <old ip> <old port> <new ip> <new port>
				f := strings.Fields(m.Message)
				if len(f) == 5 && f[0] == master {
					s.follow(copt, addr, net.JoinHostPort(f[1], f[2]), net.JoinHostPort(f[3], f[4]))
				}
			})
			c.Close()
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// sentinelOption is how the store talks to one sentinel on its own
// connection: no tracking, no retries, no cluster discovery.
func sentinelOption(addr, username, password string, tlsConfig *tls.Config) rueidis.ClientOption {
	return rueidis.ClientOption{
		InitAddress:       []string{addr},
		Username:          username,
		Password:          password,
		TLSConfig:         tlsConfig,
		ClientName:        clientName,
		ForceSingleClient: true,
		DisableCache:      true,
		DisableRetry:      true,
	}
}

// follow replaces the client when it does not use master yet, by one that
// asks sentinel first, and logs the failover once (see failover.go). prev
// is the master the sentinel reports as replaced.
func (s *Store) follow(copt rueidis.ClientOption, sentinel, prev, master string) {
	s.switchMu.Lock()
	defer s.switchMu.Unlock()
	if s.closed.Load() {
		return
	}
	old := s.cli()
	if _, ok := old.Nodes()[master]; ok {
		// rueidis's own client followed first.
		s.noteFailover(sentinel, prev, master, false)
		return
	}
	opt := copt
	opt.InitAddress = append([]string{sentinel}, slices.DeleteFunc(slices.Clone(copt.InitAddress), func(a string) bool { return a == sentinel })...)
	nc, err := rueidis.NewClient(opt)
	if err != nil {
		return // rueidis's own client follows by itself, later
	}
	if _, ok := nc.Nodes()[master]; !ok {
		nc.Close()
		return
	}
	s.client.Store(&clientRef{nc})
	s.followed.Add(1)
	s.noteFailover(sentinel, prev, master, true)
	if s.onLost != nil {
		s.onLost()
	}
	// Calls in flight on the old client fail as unreachable, and the
	// cache's guard retries them on the new one.
	go old.Close()
}

// Followed reports how many times the store replaced its client to follow
// a Sentinel failover ahead of rueidis.
func (s *Store) Followed() uint64 { return s.followed.Load() }
