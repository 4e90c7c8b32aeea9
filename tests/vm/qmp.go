package vm

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"time"
)

// QMP is a minimal client of QEMU's machine protocol, for a Machine started
// with BootOptions.QMPSocket: JSON objects, one per line, over a unix
// socket. Asynchronous events are skipped.
type QMP struct {
	conn net.Conn
	r    *bufio.Reader
}

// qmpTimeout bounds one QMP exchange.
const qmpTimeout = 30 * time.Second

// DialQMP waits (bounded polling) until QEMU listens on the machine's QMP
// socket, connects, and negotiates capabilities.
func (m *Machine) DialQMP() (*QMP, error) {
	if m.opts.QMPSocket == "" {
		return nil, fmt.Errorf("the machine was started without BootOptions.QMPSocket")
	}
	// QEMU binds the socket by its path inside the chroot.
	inChroot, err := m.Run.ChrootPath(m.opts.QMPSocket)
	if err != nil {
		return nil, err
	}
	if err := waitListening(m.ctx, m.proc, inChroot); err != nil {
		return nil, fmt.Errorf("QMP: %w", err)
	}
	conn, err := net.Dial("unix", m.opts.QMPSocket)
	if err != nil {
		return nil, fmt.Errorf("QMP: %w", err)
	}
	q := &QMP{conn: conn, r: bufio.NewReader(conn)}
	var greeting struct {
		QMP json.RawMessage `json:"QMP"`
	}
	if err := q.read(&greeting); err != nil || greeting.QMP == nil {
		conn.Close()
		return nil, fmt.Errorf("QMP greeting: %v", err)
	}
	if _, err := q.Execute(context.Background(), "qmp_capabilities", nil); err != nil {
		conn.Close()
		return nil, err
	}
	return q, nil
}

// Execute runs one command and returns its "return" value.
func (q *QMP) Execute(ctx context.Context, command string, args any) (json.RawMessage, error) {
	deadline := time.Now().Add(qmpTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := q.conn.SetDeadline(deadline); err != nil {
		return nil, err
	}
	req := map[string]any{"execute": command}
	if args != nil {
		req["arguments"] = args
	}
	if err := json.NewEncoder(q.conn).Encode(req); err != nil {
		return nil, fmt.Errorf("QMP %s: %w", command, err)
	}
	for {
		var resp struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Class, Desc string
			} `json:"error"`
			Event string `json:"event"`
		}
		if err := q.read(&resp); err != nil {
			return nil, fmt.Errorf("QMP %s: %w", command, err)
		}
		switch {
		case resp.Event != "":
			continue
		case resp.Error != nil:
			return nil, fmt.Errorf("QMP %s: %s: %s", command, resp.Error.Class, resp.Error.Desc)
		default:
			return resp.Return, nil
		}
	}
}

// Close closes the connection.
func (q *QMP) Close() error { return q.conn.Close() }

// read decodes one line.
func (q *QMP) read(v any) error {
	line, err := q.r.ReadBytes('\n')
	if err != nil {
		return err
	}
	return json.Unmarshal(line, v)
}
