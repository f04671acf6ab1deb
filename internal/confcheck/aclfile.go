package confcheck

// ACL is the Kind of an ACL file (aclfile in redis.conf, such as
// deploy/acl.conf): only "user" lines.
const ACL Kind = "acl"

// isACLFile reports whether c holds nothing but "user" lines: an ACL
// file, not a redis.conf (which could hold user lines among others).
func isACLFile(c *config) bool {
	for _, d := range c.dirs {
		if d.name != "user" {
			return false
		}
	}
	return len(c.dirs) > 0
}

// checkACLFile runs the checks that concern users: authentication and
// who may run dangerous commands. Memory, persistence, network and
// replication belong to the redis.conf that names the file.
func checkACLFile(c *config) []Finding {
	users, f, _ := loadUsers(c, Options{})
	f = append(checkAuth(c, users), f...)
	f = append(f, checkDangerous(c, users)...)
	return f
}
