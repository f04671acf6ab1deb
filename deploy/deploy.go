// Package deploy holds the production configuration files of a tiercache
// deployment: redis-production.conf, sentinel.conf, the ACL users of
// acl.conf and docker-compose.redis.yml. The files are embedded so that
// `tiercache lab` and `tiercache conf check` carry them; docs/operations.md
// explains them.
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
