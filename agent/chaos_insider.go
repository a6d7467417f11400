//go:build fieldsync_chaos

package agent

// A compromised officer laptop, for the e2e chaos test's insider phase
// (issue 12; docs/e2e.md). Compiled only with -tags fieldsync_chaos: the
// shipped binary has none of it. The chaos worker (cmd/fieldsync/chaos_on.go,
// FIELDSYNC_CHAOS_INSIDER_FILE) runs the agent through RunWorkerChaos and
// hands it commands; each forged envelope is validly signed by this device,
// chained as the next of its own log and ingested here through Ingest, as
// a received envelope would be, so that peers get it by normal sync.
//
// Forging reads this device's head under stateMu and ingests after
// releasing it: an automatic write of the agent in between (a key share)
// would make the forged envelope a fork of this device's own log. The test
// runs the commands on a quiet mesh, where no such write is due.

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"fieldsync/agent/bundle"
	"fieldsync/crdt"
	"fieldsync/crypto"
)

// RunWorkerChaos is RunWorker with hook started on the open agent (in its
// own goroutine, with a context that ends when Run returns).
func RunWorkerChaos(ctx context.Context, cfg Config, hook func(context.Context, *Agent)) error {
	a, err := openWorker(cfg)
	if err != nil {
		return err
	}
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go hook(hctx, a)
	return a.Run(ctx)
}

// Insider commands (InsiderCommand.Op).
const (
	// InsiderFutureDots forges two changes putting Record.Field: one whose
	// seen dots name op 0 of Victim's next Seqs seqs (its future writes),
	// one naming Dots dots of those seqs; both depend on Victim's seq
	// head+Seqs with the hash of its present head, which cannot be the
	// hash of what it will write there.
	InsiderFutureDots = "future_dots"
	// InsiderUndecodable forges a change whose sealed body is byte 2 and
	// seeded garbage, and one whose body is a valid change put on
	// Record.Field with its version byte set to 99.
	InsiderUndecodable = "undecodable"
	// InsiderRandomSpaces forges key shares (of a fresh key, wrapped to
	// Victim) for Spaces space IDs drawn from Seed, each the first
	// envelope of this device's log in its space; it ingests them here and,
	// if Bundle is set, also writes them into that bundle file (signed by
	// this device) for the test to import on other replicas.
	InsiderRandomSpaces = "random_spaces"
	// InsiderProbe reads the space's causal context size and the spaces
	// and orphan spaces held; it forges nothing (every replica answers it).
	InsiderProbe = "probe"
)

// InsiderCommand is one command of the chaos test's insider phase.
type InsiderCommand struct {
	ID     string `json:"id"` // [a-z0-9-]; each ID is executed once
	Op     string `json:"op"`
	Space  string `json:"space"`
	Victim string `json:"victim,omitempty"` // a device ID
	Record string `json:"record,omitempty"`
	Field  string `json:"field,omitempty"`
	Seqs   int    `json:"seqs,omitempty"`
	Dots   int    `json:"dots,omitempty"`
	Spaces int    `json:"spaces,omitempty"`
	Seed   uint64 `json:"seed,omitempty"`
	Bundle string `json:"bundle,omitempty"` // an absolute path
}

// InsiderResult is what a command did.
type InsiderResult struct {
	ID    string `json:"id"`
	Op    string `json:"op"`
	Error string `json:"error,omitempty"`
	// Envelopes forged and ingested here (random_spaces: only the first
	// few are listed, the rest counted).
	Envelopes []InsiderEnvelope `json:"envelopes,omitempty"`
	// future_dots: the victim's seqs named, and the dots named in all.
	VictimFrom uint64 `json:"victim_from,omitempty"`
	VictimTo   uint64 `json:"victim_to,omitempty"`
	Dots       int    `json:"dots,omitempty"`
	// random_spaces: key shares forged; ingested here and held in memory
	// (waiting for a routing record), or refused (RejectNoRouting).
	Forged  int `json:"forged,omitempty"`
	Held    int `json:"held,omitempty"`
	Refused int `json:"refused,omitempty"`
	Bundled int `json:"bundled,omitempty"`
	// probe (and after every command): the space's causal context size,
	// the spaces held and the spaces whose envelopes are held in memory.
	ContextBytes int `json:"context_bytes"`
	SpacesHeld   int `json:"spaces_held"`
	OrphanSpaces int `json:"orphan_spaces"`
}

// InsiderEnvelope is one forged envelope and what this device's ingest
// made of it.
type InsiderEnvelope struct {
	What   string `json:"what"`
	Space  string `json:"space"`
	Seq    uint64 `json:"seq"`
	Bytes  int    `json:"bytes"`
	Added  bool   `json:"added"`
	Reject string `json:"reject,omitempty"`
	Error  string `json:"error,omitempty"`
}

// ChaosInsider executes one command.
func (a *Agent) ChaosInsider(ctx context.Context, cmd InsiderCommand) InsiderResult {
	res := InsiderResult{ID: cmd.ID, Op: cmd.Op}
	var err error
	switch cmd.Op {
	case InsiderFutureDots:
		err = a.insiderFutureDots(cmd, &res)
	case InsiderUndecodable:
		err = a.insiderUndecodable(cmd, &res)
	case InsiderRandomSpaces:
		err = a.insiderRandomSpaces(ctx, cmd, &res)
	case InsiderProbe:
	default:
		err = fmt.Errorf("unknown insider command %q", cmd.Op)
	}
	if err != nil {
		res.Error = err.Error()
	}
	if perr := a.insiderProbe(cmd, &res); perr != nil && res.Error == "" {
		res.Error = perr.Error()
	}
	if len(res.Envelopes) > 0 || res.Forged > 0 {
		a.notify() // peers fetch what changed without waiting for a round
	}
	a.log.Warn("chaos: insider command executed", "id", cmd.ID, "op", cmd.Op, "envelopes", len(res.Envelopes), "forged", res.Forged, "err", res.Error)
	return res
}

func (a *Agent) insiderProbe(cmd InsiderCommand, res *InsiderResult) error {
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	res.SpacesHeld, res.OrphanSpaces = len(a.spaces), len(a.orphans)
	if cmd.Space == "" {
		return nil
	}
	id, err := crypto.ParseSpaceID(cmd.Space)
	if err != nil {
		return err
	}
	sp := a.spaces[id]
	if sp == nil {
		return fmt.Errorf("space %s is not held", cmd.Space)
	}
	b, err := sp.ctx.MarshalBinary()
	res.ContextBytes = len(b)
	return err
}

// insiderSpace returns the space's ID, the epoch key new writes are sealed
// under, and the victim's head in it.
func (a *Agent) insiderSpace(cmd InsiderCommand) (crypto.SpaceID, *crypto.SpaceKey, crypto.DeviceID, head, error) {
	id, err := crypto.ParseSpaceID(cmd.Space)
	if err != nil {
		return id, nil, crypto.DeviceID{}, head{}, err
	}
	var victim crypto.DeviceID
	if cmd.Victim != "" {
		if victim, err = crypto.ParseDeviceID(cmd.Victim); err != nil {
			return id, nil, victim, head{}, err
		}
	}
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	sp := a.spaces[id]
	if sp == nil || sp.current == nil {
		return id, nil, victim, head{}, fmt.Errorf("space %s: not held, or no key to write under (a relay?)", cmd.Space)
	}
	return id, sp.current, victim, sp.heads[victim], nil
}

// insiderForge signs the next envelope of this device's log in the space;
// key nil leaves the body in the clear (key shares).
func (a *Agent) insiderForge(space crypto.SpaceID, kind crypto.Kind, key *crypto.SpaceKey, body func(seq uint64, hlc crdt.Timestamp) ([]byte, error)) ([]byte, crypto.Header, error) {
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	var hd head
	if sp := a.spaces[space]; sp != nil {
		hd = sp.heads[a.dev]
	}
	hlc := a.clock.Now(a.physMillis())
	h := crypto.Header{Kind: kind, Space: space, Seq: hd.Seq + 1, HLC: hlc.Pack(), Prev: hd.Hash}
	b, err := body(h.Seq, hlc)
	if err != nil {
		return nil, h, err
	}
	env, err := crypto.Seal(h, b, key, a.id, crand.Reader)
	return env, h, err
}

// insiderIngest ingests a forged envelope here, as a received one. A
// commit that fails (a chaos store that fails one commit in K) is tried
// again: nothing of it was stored.
func (a *Agent) insiderIngest(what string, env []byte, h crypto.Header) InsiderEnvelope {
	e := InsiderEnvelope{What: what, Space: h.Space.String(), Seq: h.Seq, Bytes: len(env)}
	var err error
	for try := 0; try < 8; try++ {
		e.Added, err = a.Ingest(env)
		var re *RejectError
		if err == nil || errors.As(err, &re) || errors.Is(err, ErrClosed) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var re *RejectError
	switch {
	case errors.As(err, &re):
		e.Reject = re.Reason
	case err != nil:
		e.Error = err.Error()
	}
	return e
}

func changeBody(author crypto.DeviceID, ops []crdt.Op, deps []crdt.Dep) func(uint64, crdt.Timestamp) ([]byte, error) {
	return func(seq uint64, hlc crdt.Timestamp) ([]byte, error) {
		ch := &crdt.Change{Author: crdt.ReplicaID(author), Seq: seq, HLC: hlc, Ops: ops, Deps: deps}
		return ch.MarshalBinary()
	}
}

func (a *Agent) insiderFutureDots(cmd InsiderCommand, res *InsiderResult) error {
	id, key, victim, vh, err := a.insiderSpace(cmd)
	if err != nil {
		return err
	}
	switch {
	case victim.IsZero() || victim == a.dev:
		return errors.New("future_dots: name a victim device other than this one")
	case vh.Seq == 0:
		return fmt.Errorf("future_dots: no envelope of %s held in the space", victim)
	case cmd.Seqs < 1 || cmd.Record == "" || cmd.Field == "":
		return errors.New("future_dots: want seqs >= 1, a record and a field")
	}
	from, to := vh.Seq+1, vh.Seq+uint64(cmd.Seqs)
	res.VictimFrom, res.VictimTo = from, to
	// The hash of the victim's present head: whatever it writes at seq
	// `to` is another envelope.
	deps := []crdt.Dep{{Replica: crdt.ReplicaID(victim), Seq: to, Hash: vh.Hash}}
	forge := func(what string, seen []crdt.Dot) error {
		res.Dots += len(seen)
		ops := []crdt.Op{{Kind: crdt.OpPut, Record: crdt.RecordID(cmd.Record), Field: cmd.Field, Value: []byte("insider-" + what + "-decoy"), Seen: seen}}
		env, h, err := a.insiderForge(id, crypto.KindChange, key, changeBody(a.dev, ops, deps))
		if err != nil {
			return err
		}
		res.Envelopes = append(res.Envelopes, a.insiderIngest(what, env, h))
		return nil
	}
	var seen []crdt.Dot
	for s := from; s <= to; s++ {
		seen = append(seen, crdt.Dot{Replica: crdt.ReplicaID(victim), Seq: s})
	}
	if err := forge("future", seen); err != nil {
		return err
	}
	if cmd.Dots <= 0 {
		return nil
	}
	// Many dots: the victim's next seqs, every op number up to Dots/Seqs.
	per := (cmd.Dots + cmd.Seqs - 1) / cmd.Seqs
	seen = make([]crdt.Dot, 0, cmd.Dots)
	for s := from; s <= to && len(seen) < cmd.Dots; s++ {
		for op := 0; op < per && len(seen) < cmd.Dots; op++ {
			seen = append(seen, crdt.Dot{Replica: crdt.ReplicaID(victim), Seq: s, Op: uint32(op)})
		}
	}
	return forge("many", seen)
}

func (a *Agent) insiderUndecodable(cmd InsiderCommand, res *InsiderResult) error {
	id, key, _, _, err := a.insiderSpace(cmd)
	if err != nil {
		return err
	}
	if cmd.Record == "" || cmd.Field == "" {
		return errors.New("undecodable: want a record and a field")
	}
	rng := rand.New(rand.NewPCG(cmd.Seed, 0x6a7b))
	garbage := make([]byte, 1+16+rng.IntN(48))
	garbage[0] = 2 // the change format's version, then nothing it can decode
	for i := 1; i < len(garbage); i++ {
		garbage[i] = byte(rng.Uint32())
	}
	bodies := []struct {
		what string
		body func(uint64, crdt.Timestamp) ([]byte, error)
	}{
		{"garbage", func(uint64, crdt.Timestamp) ([]byte, error) { return garbage, nil }},
		{"version99", func(seq uint64, hlc crdt.Timestamp) ([]byte, error) {
			ops := []crdt.Op{{Kind: crdt.OpPut, Record: crdt.RecordID(cmd.Record), Field: cmd.Field, Value: []byte("insider-version99-decoy")}}
			b, err := changeBody(a.dev, ops, nil)(seq, hlc)
			if err == nil {
				b[0] = 99 // a newer format this build does not know
			}
			return b, err
		}},
	}
	for _, b := range bodies {
		env, h, err := a.insiderForge(id, crypto.KindChange, key, b.body)
		if err != nil {
			return err
		}
		res.Envelopes = append(res.Envelopes, a.insiderIngest(b.what, env, h))
	}
	return nil
}

func (a *Agent) insiderRandomSpaces(ctx context.Context, cmd InsiderCommand, res *InsiderResult) error {
	if cmd.Spaces < 1 {
		return errors.New("random_spaces: want spaces >= 1")
	}
	victim, err := crypto.ParseDeviceID(cmd.Victim)
	if err != nil {
		return fmt.Errorf("random_spaces: victim: %w", err)
	}
	vc := a.trustNow().certs[victim]
	if vc == nil {
		return fmt.Errorf("random_spaces: no certificate of %s", victim)
	}
	key, err := crypto.NewSpaceKey(crand.Reader)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(cmd.Seed, 0x5bace))
	var envs [][]byte
	for i := 0; i < cmd.Spaces; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		var sid crypto.SpaceID
		for j := range sid {
			sid[j] = byte(rng.Uint32())
		}
		share, err := crypto.WrapKey(key, sid, vc.Device, crand.Reader)
		if err != nil {
			return err
		}
		env, h, err := a.insiderForge(sid, crypto.KindKeyShare, nil, func(uint64, crdt.Timestamp) ([]byte, error) { return share, nil })
		if err != nil {
			return err
		}
		res.Forged++
		e := a.insiderIngest("keyshare", env, h)
		switch {
		case e.Error != "":
			return fmt.Errorf("ingest of key share %d: %s", i, e.Error)
		case e.Reject != "":
			res.Refused++
		case !e.Added:
			res.Held++
		}
		if e.Added || e.Reject != "" && e.Reject != RejectNoRouting || len(res.Envelopes) < 4 {
			res.Envelopes = append(res.Envelopes, e) // the unexpected ones always
		}
		envs = append(envs, env)
	}
	if cmd.Bundle == "" {
		return nil
	}
	_, err = bundle.CreateFile(cmd.Bundle, func(w io.Writer) error {
		bw, err := crypto.NewBundleWriter(w, crypto.BundleExport, a.id, a.cert, crypto.DeviceID{}, a.cfg.now())
		if err != nil {
			return err
		}
		for _, env := range envs {
			if err := bw.Add(crypto.ItemEnvelope, env); err != nil {
				return err
			}
			res.Bundled++
		}
		return bw.Close()
	})
	return err
}
