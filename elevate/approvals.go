package elevate

import (
	"encoding/json"
	"strings"

	"warden/elevate/wire"
	"warden/engine"
)

// approvalsList serves wire.TypeApprovalsList: what this user may see.
func (ss *session) approvalsList() {
	list, err := ss.s.opts.Engine.Approvals(ss.a)
	if err != nil {
		ss.fail(wire.ExitRefused, err.Error())
		return
	}
	if list == nil {
		list = []engine.Approval{}
	}
	data, _ := json.Marshal(map[string]any{"approvals": list})
	ss.c.Send(&wire.Message{Type: wire.TypeResult, Data: data})
}

// approvalsDecide serves wire.TypeApprovalsDecide as the kernel's user.
func (ss *session) approvalsDecide(m *wire.Message) {
	a, err := ss.s.opts.Engine.Decide(ss.ctx, ss.a, m.ID, m.Approve, strings.TrimSpace(m.Reason))
	if err != nil {
		ss.fail(wire.ExitRefused, err.Error())
		return
	}
	data, _ := json.Marshal(a)
	ss.c.Send(&wire.Message{Type: wire.TypeResult, Data: data})
}
