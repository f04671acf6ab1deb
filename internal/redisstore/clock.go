package redisstore

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/rueidis"
)

// Time returns the clock of one Redis node, read with TIME: the master on
// standalone and Sentinel, and on Cluster the master with the lowest
// address, so that every client of a deployment reads the same node's
// clock (the coherence canary compares times stamped by different
// instances on it). TIME reads no key and changes nothing.
func (s *Store) Time(ctx context.Context) (time.Time, error) {
	cli, err := s.conn()
	if err != nil {
		return time.Time{}, err
	}
	node := cli
	if cli.Mode() == rueidis.ClientModeCluster {
		if masters := s.clusterMasters(ctx, cli); len(masters) > 0 {
			if n, ok := cli.Nodes()[slices.Min(masters)]; ok {
				node = n
			}
		}
	}
	parts, err := node.Do(ctx, node.B().Time().Build()).AsStrSlice()
	if err != nil {
		return time.Time{}, s.wrap(err, "time")
	}
	if len(parts) != 2 {
		return time.Time{}, fmt.Errorf("redisstore: time: unexpected reply %q", parts)
	}
	sec, err1 := strconv.ParseInt(parts[0], 10, 64)
	usec, err2 := strconv.ParseInt(parts[1], 10, 64)
	if err1 != nil || err2 != nil {
		return time.Time{}, fmt.Errorf("redisstore: time: unexpected reply %q", parts)
	}
	return time.Unix(sec, usec*1000), nil
}
