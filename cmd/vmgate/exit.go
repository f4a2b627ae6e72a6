package main

import "errors"

// Exit codes, the same for every command; each command's help repeats the ones it uses.
const (
	exitOK      = 0 // done; nothing refused
	exitRefused = 1 // an answer, not a failure: a list was refused, a signature is invalid
	exitError   = 2 // vmgate could not do its work: bad usage, bad config, unreadable files
	exitTargets = 3 // vmgate terminate --dry-run found VMs to act on, so that a cron job can alert
)

// outcome is an error that carries its own exit code. An empty msg means the command has
// already said everything on stderr.
type outcome struct {
	code int
	msg  string
}

func (o *outcome) Error() string { return o.msg }

func refused(msg string) error { return &outcome{code: exitRefused, msg: msg} }

// exitCode is the one place that turns an error into the process's exit code.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var o *outcome
	if errors.As(err, &o) {
		return o.code
	}
	return exitError
}
