package logsign

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"pushgo.dev/gateway/proto/bus"
)

// MetaSignedFrom is the stream metadata key of the horizon: "<seq> <key id> <signature>", the
// signature (base64) by that log key over horizonText(seq).
const MetaSignedFrom = "pushgo_log_signed_from"

func horizonText(stream string, seq uint64) []byte {
	return []byte("pushgo log " + stream + " signed from " + strconv.FormatUint(seq, 10))
}

// parseHorizon checks a horizon value against the verifier's keys.
func (v *Verifier) parseHorizon(stream, val string) (uint64, error) {
	f := strings.Fields(val)
	if len(f) != 3 {
		return 0, fmt.Errorf("malformed %s %q", MetaSignedFrom, val)
	}
	seq, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil || seq == 0 {
		return 0, fmt.Errorf("malformed %s %q", MetaSignedFrom, val)
	}
	key, ok := v.keys[f[1]]
	if !ok {
		return 0, fmt.Errorf("%s signed with unknown key %q", MetaSignedFrom, f[1])
	}
	sig, err := base64.StdEncoding.DecodeString(f[2])
	if err != nil || !ed25519.Verify(key, horizonText(stream, seq), sig) {
		return 0, fmt.Errorf("%s does not verify", MetaSignedFrom)
	}
	return seq, nil
}

// LoadHorizon reads the horizon of stream into v. Without one (a store no signing lifecycle
// has started on yet, or no stream yet: ingest may start before lifecycle made it) the horizon
// stays unknown and every entry must be signed; a horizon that does not verify is an error,
// and leaves it so too.
func (v *Verifier) LoadHorizon(ctx context.Context, js jetstream.JetStream, stream string) error {
	if v == nil {
		return nil
	}
	s, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	val, ok := s.CachedInfo().Config.Metadata[MetaSignedFrom]
	if !ok {
		return nil
	}
	seq, err := v.parseHorizon(stream, val)
	if err != nil {
		return err
	}
	v.SetSignedFromIn(stream, seq)
	return nil
}

// Horizon is the MetaSignedFrom value saying that stream is signed by s from seq on. A stream
// created empty by a signing lifecycle gets Horizon(stream, 1) in its creation config
// (bus.Options.EventsCreateMetadata), so that EnsureHorizon finds it and updates nothing.
func (s *Signer) Horizon(stream string, seq uint64) string {
	return fmt.Sprintf("%d %s %s", seq, s.ID(), base64.StdEncoding.EncodeToString(ed25519.Sign(s.priv, horizonText(stream, seq))))
}

// ErrNoHorizon reports a stream without a signing horizon.
var ErrNoHorizon = errors.New("log has no signing horizon")

// EnsureHorizon is lifecycle's at start: it loads the horizon of stream into v or, when the
// stream has none (a fresh store, or one written before the log was signed), sets it to the
// sequence after the stream's last, signed by s, and loads that. Entries already stored are
// then reported unsigned; every later one must be signed. v must hold s's public key.
func (v *Verifier) EnsureHorizon(ctx context.Context, js jetstream.JetStream, stream string, s *Signer) error {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	info := st.CachedInfo()
	if val, ok := info.Config.Metadata[MetaSignedFrom]; ok {
		seq, err := v.parseHorizon(stream, val)
		if err != nil {
			return err
		}
		v.SetSignedFromIn(stream, seq)
		return nil
	}
	seq := info.State.LastSeq + 1
	cfg := info.Config
	cfg.Metadata = maps.Clone(cfg.Metadata)
	if cfg.Metadata == nil {
		cfg.Metadata = map[string]string{}
	}
	cfg.Metadata[MetaSignedFrom] = s.Horizon(stream, seq)
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("set the log's signing horizon: %w", err)
	}
	return v.LoadHorizon(ctx, js, stream)
}

// FollowHorizon loads the horizon of stream into v now and, while the stream has none yet
// (lifecycle sets it when it first starts with a key), again every few seconds until it
// appears or ctx ends, and whenever an unsigned entry is opened meanwhile: until it is known
// every entry must be signed, so an unsigned one is never taken as good. It returns the first
// load's error; later failures are logged. Call it before the verifier is shared.
func (v *Verifier) FollowHorizon(ctx context.Context, js jetstream.JetStream, stream string, log *slog.Logger) error {
	if v == nil {
		return nil
	}
	if err := v.LoadHorizon(ctx, js, stream); err != nil {
		return err
	}
	if v.SignedFromIn(stream) > 0 {
		return nil
	}
	v.horizons[bus.PartitionOfEventsStream(stream)].reload = func() {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := v.LoadHorizon(rctx, js, stream); err != nil {
			log.Warn("log signing horizon", "err", err)
		}
	}
	go func() {
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for v.SignedFromIn(stream) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := v.LoadHorizon(ctx, js, stream); err != nil {
				log.Warn("log signing horizon", "err", err)
			}
		}
	}()
	return nil
}
