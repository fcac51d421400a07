package jobs

// MaxOutput is how much of one task's output (stdout and stderr together)
// is kept with the run record; the rest is counted and dropped.
const MaxOutput = 256 << 10

// capped keeps the first max bytes written to it and counts the rest. It
// never grows beyond max, whatever a task prints.
type capped struct {
	buf     []byte
	max     int
	dropped int64
}

func newCapped(max int) *capped { return &capped{max: max} }

func (c *capped) Write(p []byte) (int, error) {
	room := c.max - len(c.buf)
	if room > len(p) {
		room = len(p)
	}
	if room > 0 {
		if c.buf == nil {
			c.buf = make([]byte, 0, c.max) // once, so append never overshoots max
		}
		c.buf = append(c.buf, p[:room]...)
	}
	c.dropped += int64(len(p) - room)
	return len(p), nil
}
