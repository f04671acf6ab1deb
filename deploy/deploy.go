// Package deploy holds the production configuration files of a tiercache
// deployment: redis-production.conf (and redis-defrag.conf, which turns
// on active defragmentation where the build supports it), sentinel.conf,
// the ACL users of acl.conf, docker-compose.redis.yml with the Prometheus
// and Grafana files it mounts, and make-secrets.sh, which creates the
// deployment's secrets. The Redis files are embedded so that `tiercache
// lab` and `tiercache conf check` carry them; docs/operations.md explains
// them all.
package deploy

import _ "embed"

// RedisConf is redis-production.conf: the configuration of every Redis
// data node (master and replicas).
//
//go:embed redis-production.conf
var RedisConf string

// SentinelConf is sentinel.conf: the configuration of every sentinel,
// monitoring the master set "mymaster" with quorum 2.
//
//go:embed sentinel.conf
var SentinelConf string

// ACL is acl.conf, the ACL users that RedisConf loads as its aclfile. Every
// password hash is a placeholder of zeros, which no password matches: a
// user stays locked until its hash is replaced.
//
//go:embed acl.conf
var ACL string
