package elevate

// RawClient is a hand-made client for tests: it sends exactly what it is
// given, with fds, and returns what comes back.
type RawClient struct{ *Client }

// SendRaw sends data as one message with fds attached.
func (r RawClient) SendRaw(data []byte, fds ...int) error {
	var oob []byte
	if len(fds) > 0 {
		oob = rights(fds)
	}
	_, _, err := r.c.c.WriteMsgUnix(data, oob, nil)
	return err
}

// Recv reads one message.
func (r RawClient) Recv() (*Message, error) {
	m, fds, err := r.c.recv()
	closeAll(fds)
	return m, err
}
