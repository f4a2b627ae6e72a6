package serve

import (
	"log/slog"
	"net"
)

// Notifier returns a Notify function that tells systemd the daemon's state over the
// datagram socket a Type=notify unit gives it ($NOTIFY_SOCKET), as sd_notify(3) does; it
// does nothing when socket is empty (not started by systemd). It is a few lines, not a
// dependency.
func Notifier(socket string, log *slog.Logger) func(state string) {
	if socket == "" {
		return func(string) {}
	}
	if socket[0] == '@' {
		socket = "\x00" + socket[1:] // an abstract socket
	}
	return func(state string) {
		conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: socket, Net: "unixgram"})
		if err != nil {
			log.Warn("serve: sd_notify", "err", err)
			return
		}
		defer conn.Close()
		if _, err := conn.Write([]byte(state)); err != nil {
			log.Warn("serve: sd_notify", "err", err)
		}
	}
}
