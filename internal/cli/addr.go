package cli

import "strings"

// AfterApply completes a bare port given to --addr ("18083") into a
// listen address on every interface (":18083"), as an operator means it;
// net.Listen would refuse it as "missing port in address".
func (c *serveCmd) AfterApply() error {
	if c.Addr != nil && bareNumber(*c.Addr) {
		a := ":" + *c.Addr
		c.Addr = &a
	}
	return nil
}

func bareNumber(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}
