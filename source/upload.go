package source

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"warden/audit"
	"warden/state"
)

// uploadCursor is the Status record holding, per agent id, the highest
// audit sequence number the backend acknowledged. It is written after
// each acknowledged batch, so an agent restart resumes after it.
const uploadCursor = "backend-audit-upload/"

type cursor struct {
	Acked uint64    `json:"acked"`
	At    time.Time `json:"at"`
}

// UploadAudit sends stored audit events the backend has not acknowledged,
// in batches, oldest first, until none is left. It returns how many were
// sent. Nothing is lost across outages and restarts (the cursor is only
// moved by an acknowledgement) and nothing is stored twice (the backend
// ignores sequence numbers it holds).
func (s *Sync) UploadAudit(ctx context.Context) (int, error) {
	ep, err := s.endpoint()
	if err != nil {
		return 0, err
	}
	if ep.reg == nil {
		return 0, ErrNotRegistered
	}
	client, err := s.httpClient(ep)
	if err != nil {
		return 0, err
	}
	key := uploadCursor + ep.reg.AgentID
	var cur cursor
	if _, err := s.store.Get(state.Status, key, &cur); err != nil {
		return 0, err
	}
	sent := 0
	for ctx.Err() == nil {
		evs, _, err := audit.Query(s.store, audit.Filter{After: cur.Acked, Limit: s.batch})
		if err != nil {
			return sent, err
		}
		if len(evs) == 0 {
			return sent, nil
		}
		batch := AuditBatch{Events: make([]json.RawMessage, len(evs))}
		for i, e := range evs {
			batch.Events[i] = e.Raw
		}
		acked, err := s.postAudit(ctx, client, ep, batch)
		if err != nil {
			return sent, err
		}
		last := evs[len(evs)-1].Seq
		if acked < last {
			return sent, fmt.Errorf("audit upload: backend acknowledged %d, below %d sent", acked, last)
		}
		sent += len(evs)
		cur = cursor{Acked: acked, At: time.Now().UTC()}
		if err := s.store.Put(state.Status, key, cur); err != nil {
			return sent, err
		}
	}
	return sent, ctx.Err()
}

func (s *Sync) postAudit(ctx context.Context, client *retryablehttp.Client, ep *endpoint, b AuditBatch) (uint64, error) {
	body, err := json.Marshal(b)
	if err != nil {
		return 0, err
	}
	u := ep.url + "/agents/" + ep.reg.AgentID + "/audit"
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, u, body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	ep.authorize(req)
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("audit upload: %w", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("audit upload: backend answered %s: %s", resp.Status, bytes.TrimSpace(data))
	}
	var ack AuditAck
	if err := json.Unmarshal(data, &ack); err != nil {
		return 0, fmt.Errorf("audit upload: %w", err)
	}
	return ack.Acked, nil
}

// uploadLoop uploads every uploadEvery, backing off on failure.
func (s *Sync) uploadLoop(ctx context.Context) {
	failures := 0
	for {
		wait := s.uploadEvery
		n, err := s.UploadAudit(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, ErrNoBackend), errors.Is(err, ErrNotRegistered):
			failures = 0
		case err != nil:
			failures++
			wait = jitter(s.minBackoff, s.uploadBackoffLimit(), failures-1)
			s.log.Warn("audit upload failed", "err", err, "retryIn", wait.Round(time.Millisecond).String())
		default:
			failures = 0
			if n > 0 {
				s.log.Debug("audit uploaded", "events", n)
			}
		}
		if !sleepCtx(ctx, wait) {
			return
		}
	}
}

func (s *Sync) uploadBackoffLimit() time.Duration {
	if s.maxBackoff > 0 {
		return s.maxBackoff
	}
	return max(s.uploadEvery, time.Minute)
}
