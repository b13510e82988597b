package audit

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"slices"

	"github.com/nats-io/nats.go"
)

// State writes, as JSON Lines ordered by channel and event id, every event f selects as it
// was at time at (Unix ms): the state its last entry recorded at or before at. Events created
// after at are left out. It keeps one state per event in memory.
func State(ctx context.Context, nc *nats.Conn, at int64, f Filter, w io.Writer) (int, error) {
	f.Until = at
	thing := f.Thing
	f.Thing = "" // an event's thing_id is fixed at create: filter on its final state here
	states := map[string]json.RawMessage{}
	things := map[string]string{}
	err := each(ctx, nc, f, func(m Msg) error {
		rec, err := decode(m)
		if err != nil || !f.keeps(rec) {
			return nil
		}
		b, err := jsonOpts.Marshal(rec.GetState())
		if err != nil {
			return err
		}
		states[m.Subject], things[m.Subject] = b, rec.GetState().GetThingId()
		return nil
	})
	if err != nil {
		return 0, err
	}
	keys := make([]string, 0, len(states))
	for k := range states {
		if thing == "" || things[k] == thing {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	bw := bufio.NewWriter(w)
	for _, k := range keys {
		if _, err := bw.Write(append(states[k], '\n')); err != nil {
			return 0, err
		}
	}
	return len(keys), bw.Flush()
}
