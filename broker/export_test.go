package broker

// SetStopServer replaces how Close stops mochi's server (tests only).
func SetStopServer(b *Broker, stop func()) { b.stopServer = stop }
