package tiercacheprom

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tiercache/tiercache"
)

// scraped holds the descriptions of the metrics read from the cache at
// each scrape.
type scraped struct {
	requests, corrupt, invReceived, linkResets, linkSuspects, linkResumes, stale, eager, lockWaits *prometheus.Desc
	cmdCalls, cmdSeconds, cmdFailed, breakerRefused                                                *prometheus.Desc
	breaker, breakerOpen, queueLen, queueOverflows, replayed, replayFailed                         *prometheus.Desc
	l1Entries, l1Bytes, l1MaxBytes, l1Evictions                                                    *prometheus.Desc

	redisUp, redisInfo, redisPing, usedMem, maxMem, evicted, ksHits, ksMisses *prometheus.Desc
	clients, replicas, opsPerSec, masterChanges                               *prometheus.Desc

	cohWritten, cohSeen, cohMissed, cohWatching, cohOffset, cohUncertainty *prometheus.Desc
}

func newScraped(cl prometheus.Labels) scraped {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("tiercache_"+name, help, labels, cl)
	}
	return scraped{
		requests:       d("requests_total", "Reads by operation (get, get_many, fetch, fetch_many) and result (hit_l1, hit_l2, miss, stale, error); batches count one per distinct key.", "op", "result"),
		corrupt:        d("corrupt_values_total", "Stored values that could not be decoded (each also a miss)."),
		invReceived:    d("invalidations_received_total", "Keys Redis reported as changed elsewhere (L1 entries and cached versions dropped)."),
		linkResets:     d("invalidation_link_resets_total", "Times the invalidation link was lost and every L1 entry stopped being fresh."),
		linkSuspects:   d("invalidation_link_suspects_total", "Of the link resets, times a Redis node did not answer the liveness probe in time (a paused or partitioned node)."),
		linkResumes:    d("invalidation_link_resumes_total", "Of the link suspects, times the late answer came on the same link: L1 served again as it was, with no entry read again."),
		stale:          d("stale_served_total", "Fail-safe stale values served."),
		eager:          d("eager_refreshes_total", "Background refreshes started by eager refresh."),
		lockWaits:      d("lock_waits_total", "Fetches that waited for another instance's load (fleet lock)."),
		breaker:        d("breaker_state", "State of the circuit breaker around L2: 1 for the current state, 0 for the others.", "state"),
		cmdCalls:       d("redis_commands_total", "INFO commandstats calls of the node, by command.", "node", "command"),
		cmdSeconds:     d("redis_command_seconds_total", "INFO commandstats time spent in the command on the node (usec), by command.", "node", "command"),
		cmdFailed:      d("redis_command_failures_total", "INFO commandstats rejected_calls plus failed_calls of the node, by command.", "node", "command"),
		breakerRefused: d("breaker_refused_total", "L2 calls the open circuit breaker refused (failed at once with ErrCircuitOpen)."),
		breakerOpen:    d("breaker_open_seconds", "How long the circuit breaker around L2 has been open (or half-open between probes) since it last opened; 0 while closed."),
		queueLen:       d("recovery_queue_length", "Operations waiting in the auto-recovery queue."),
		queueOverflows: d("recovery_queue_overflows_total", "Operations refused because the recovery queue was full."),
		replayed:       d("recovery_replayed_total", "Queued operations applied once L2 answered again."),
		replayFailed:   d("recovery_replay_failed_total", "Queued operations L2 refused when replayed (dropped and logged)."),
		l1Entries:      d("l1_entries", "Entries in L1, fresh or not."),
		l1Bytes:        d("l1_bytes", "Bytes accounted to L1 entries."),
		l1Evictions:    d("l1_evictions_total", "L1 entries removed to keep L1 within its maximum size (L1.MaxBytes)."),
		l1MaxBytes:     d("l1_max_bytes", "The L1's bound in bytes; 0 when L1 is disabled."),

		redisUp:        d("redis_up", "1 when the Redis node answered PING and INFO at this scrape, else 0.", "node"),
		redisInfo:      d("redis_node_info", "Always 1; role is master or replica.", "node", "role"),
		redisPing:      d("redis_ping_seconds", "Round trip of a PING to the node at this scrape.", "node"),
		usedMem:        d("redis_memory_used_bytes", "INFO used_memory of the node.", "node"),
		maxMem:         d("redis_memory_max_bytes", "INFO maxmemory of the node; 0 means no limit.", "node"),
		evicted:        d("redis_evicted_keys_total", "INFO evicted_keys of the node.", "node"),
		ksHits:         d("redis_keyspace_hits_total", "INFO keyspace_hits of the node.", "node"),
		ksMisses:       d("redis_keyspace_misses_total", "INFO keyspace_misses of the node.", "node"),
		clients:        d("redis_connected_clients", "INFO connected_clients of the node.", "node"),
		replicas:       d("redis_connected_replicas", "INFO connected_slaves of the node.", "node"),
		opsPerSec:      d("redis_instantaneous_ops_per_second", "INFO instantaneous_ops_per_sec of the node.", "node"),
		cohWritten:     d("coherence_markers_written_total", "Coherence canary: markers this instance wrote."),
		cohSeen:        d("coherence_markers_seen_total", "Coherence canary: other instances' markers whose invalidation reached this instance (each one observation of tiercache_coherence_lag_seconds)."),
		cohMissed:      d("coherence_markers_missed_total", "Coherence canary: other instances' markers that did not reach this instance: skipped, or not invalidated within the canary's miss_after."),
		cohWatching:    d("coherence_watched_instances", "Coherence canary: other instances whose markers this instance follows."),
		cohOffset:      d("coherence_clock_offset_seconds", "Redis's clock minus this host's, as estimated with TIME."),
		cohUncertainty: d("coherence_clock_uncertainty_seconds", "Bound of the error of tiercache_coherence_clock_offset_seconds: half the TIME round trip."),
		masterChanges:  d("redis_master_changes_total", "Times this cache saw the Redis master change (a Sentinel failover, or a restart without persistence); standalone and Sentinel only."),
	}
}

func (s *scraped) all() []*prometheus.Desc {
	return []*prometheus.Desc{
		s.requests, s.corrupt, s.invReceived, s.linkResets, s.linkSuspects, s.linkResumes, s.stale, s.eager, s.lockWaits,
		s.cmdCalls, s.cmdSeconds, s.cmdFailed, s.breakerRefused,
		s.breaker, s.breakerOpen, s.queueLen, s.queueOverflows, s.replayed, s.replayFailed,
		s.l1Entries, s.l1Bytes, s.l1MaxBytes, s.l1Evictions,
		s.redisUp, s.redisInfo, s.redisPing, s.usedMem, s.maxMem, s.evicted, s.ksHits, s.ksMisses,
		s.clients, s.replicas, s.opsPerSec, s.masterChanges,
		s.cohWritten, s.cohSeen, s.cohMissed, s.cohWatching, s.cohOffset, s.cohUncertainty,
	}
}

func (s *scraped) describe(ch chan<- *prometheus.Desc) {
	for _, d := range s.all() {
		ch <- d
	}
}

var breakerStates = []tiercache.BreakerState{
	tiercache.BreakerClosed, tiercache.BreakerOpen, tiercache.BreakerHalfOpen, tiercache.BreakerDisabled,
}

func (s *scraped) collect(ch chan<- prometheus.Metric, rep *tiercache.Stats) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	fcounter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	st := &rep.Counters
	for op := range tiercache.NumOps {
		for res := range tiercache.NumResults {
			counter(s.requests, st.Requests[op][res], op.String(), res.String())
		}
	}
	counter(s.corrupt, st.Corrupt)
	counter(s.invReceived, st.Invalidations)
	counter(s.linkResets, st.LinkResets)
	counter(s.linkSuspects, st.LinkSuspects)
	counter(s.linkResumes, st.LinkResumes)
	counter(s.stale, st.StaleServed)
	counter(s.eager, st.EagerRefresh)
	counter(s.lockWaits, st.LockWaits)
	for _, b := range breakerStates {
		v := 0.0
		if st.Breaker == b {
			v = 1
		}
		gauge(s.breaker, v, string(b))
	}
	gauge(s.queueLen, float64(st.QueueLength))
	counter(s.queueOverflows, st.QueueOverflow)
	counter(s.replayed, st.Replayed)
	counter(s.replayFailed, st.ReplayFailed)
	gauge(s.breakerOpen, st.BreakerOpenFor.Seconds())
	counter(s.breakerRefused, st.BreakerRefused)
	gauge(s.l1Entries, float64(st.L1Entries))
	gauge(s.l1Bytes, float64(st.L1Bytes))
	counter(s.l1Evictions, st.L1Evictions)
	gauge(s.l1MaxBytes, float64(rep.L1MaxBytes))

	for _, n := range rep.Nodes {
		if !n.Up {
			gauge(s.redisUp, 0, n.Addr)
			continue
		}
		gauge(s.redisUp, 1, n.Addr)
		gauge(s.redisInfo, 1, n.Addr, n.Role)
		gauge(s.redisPing, n.Ping.Seconds(), n.Addr)
		gauge(s.usedMem, float64(n.UsedMemory), n.Addr)
		gauge(s.maxMem, float64(n.MaxMemory), n.Addr)
		counter(s.evicted, uint64(n.EvictedKeys), n.Addr)
		counter(s.ksHits, uint64(n.KeyspaceHits), n.Addr)
		counter(s.ksMisses, uint64(n.KeyspaceMisses), n.Addr)
		gauge(s.clients, float64(n.Clients), n.Addr)
		gauge(s.replicas, float64(n.Replicas), n.Addr)
		gauge(s.opsPerSec, float64(n.OpsPerSec), n.Addr)
		for name, cs := range n.Commands {
			counter(s.cmdCalls, uint64(cs.Calls), n.Addr, name)
			fcounter(s.cmdSeconds, cs.Time.Seconds(), n.Addr, name)
			counter(s.cmdFailed, uint64(cs.Rejected+cs.Failed), n.Addr, name)
		}
	}
	if rep.Topology != "memory" && rep.Topology != "" {
		counter(s.masterChanges, rep.MasterChanges)
	}
	if co := rep.Coherence; co != nil {
		counter(s.cohWritten, co.Written)
		counter(s.cohSeen, co.Seen)
		counter(s.cohMissed, co.Missed)
		gauge(s.cohWatching, float64(co.Watching))
		gauge(s.cohOffset, co.ClockOffset.Seconds())
		gauge(s.cohUncertainty, co.ClockUncertainty.Seconds())
	}
}
