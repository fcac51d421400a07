package broker

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"warden/audit"
)

var _ audit.Publisher = (*Broker)(nil)

// Publish puts a stored audit event on AuditMessage at QoS 1 (its JSON as
// stored, e.Raw, when set). It never blocks: the audit writer calls it on
// its own goroutine. When the queue is full the message is dropped and
// counted (Dropped); subscribers read history through the API anyway.
func (b *Broker) Publish(e audit.Event) {
	payload := []byte(e.Raw)
	if payload == nil {
		var err error
		if payload, err = json.Marshal(e); err != nil {
			b.log.Error("encode audit event", "err", err)
			return
		}
	}
	if err := b.enqueue(TopicAudit, payload); err != nil {
		b.log.Debug("audit event not published", "id", e.ID, "err", err)
	}
}

// Follow publishes every event received from events (an audit
// subscription, which catches up from the store) on AuditMessage, in
// order and without dropping any: it waits for room in the publish queue
// instead. It returns at once; the forwarding ends when events closes or
// the broker closes. Call it after Start.
func (b *Broker) Follow(events <-chan audit.Event) {
	b.bg.Add(1)
	go func() {
		defer b.bg.Done()
		for {
			select {
			case e, ok := <-events:
				if !ok {
					return
				}
				payload := []byte(e.Raw)
				if payload == nil {
					payload, _ = json.Marshal(e)
				}
				select {
				case b.queue <- outMsg{topic: TopicAudit, payload: payload}:
				case <-b.stop:
					return
				}
			case <-b.stop:
				return
			}
		}
	}()
}

// Notify publishes payload on Notifications at QoS 1 (the policy engine's
// monitor-notify). It never blocks; it fails with ErrQueueFull or ErrClosed.
func (b *Broker) Notify(payload []byte) error {
	return b.enqueue(TopicNotifications, payload)
}

// Dropped is how many messages Publish and Notify could not queue.
func (b *Broker) Dropped() uint64 { return b.dropped.Load() }

func (b *Broker) enqueue(topic string, payload []byte) error {
	select {
	case <-b.stop:
		b.dropped.Add(1)
		return ErrClosed
	default:
	}
	select {
	case b.queue <- outMsg{topic: topic, payload: payload}:
		return nil
	default:
		if b.dropped.Add(1) == 1 {
			b.log.Warn("publish queue full, dropping messages", "topic", topic)
		}
		return ErrQueueFull
	}
}

// publishLoop sends the agent's messages in order through mochi's inline
// client, which bypasses the ACL. Queued messages are sent before it stops.
func (b *Broker) publishLoop() {
	defer b.bg.Done()
	for {
		select {
		case m := <-b.queue:
			b.send(m)
		case <-b.stop:
			for {
				select {
				case m := <-b.queue:
					b.send(m)
				default:
					return
				}
			}
		}
	}
}

func (b *Broker) send(m outMsg) {
	if err := b.srv.Publish(m.topic, m.payload, false, 1); err != nil {
		b.log.Warn("publish", "topic", m.topic, "err", err)
	}
}

func (b *Broker) sweepLoop(every time.Duration) {
	defer b.bg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if n := b.Sweep(); n > 0 {
				b.log.Info("disconnected clients whose certificate no longer holds", "count", n)
			}
		case <-b.stop:
			return
		}
	}
}

// levelFloor drops records below min: mochi's own Info logs repeat what
// the broker logs with more context.
type levelFloor struct {
	h   slog.Handler
	min slog.Level
}

func (l levelFloor) Enabled(ctx context.Context, lv slog.Level) bool {
	return lv >= l.min && l.h.Enabled(ctx, lv)
}
func (l levelFloor) Handle(ctx context.Context, r slog.Record) error { return l.h.Handle(ctx, r) }
func (l levelFloor) WithAttrs(a []slog.Attr) slog.Handler {
	return levelFloor{h: l.h.WithAttrs(a), min: l.min}
}
func (l levelFloor) WithGroup(n string) slog.Handler {
	return levelFloor{h: l.h.WithGroup(n), min: l.min}
}
