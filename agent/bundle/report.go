package bundle

import (
	"fmt"

	"fieldsync/crypto"
)

// noteList keeps the first maxObjectNotes notes and counts the rest.
type noteList struct {
	notes   []string
	omitted int
}

func (n *noteList) add(s string) {
	if len(n.notes) < maxObjectNotes {
		n.notes = append(n.notes, s)
		return
	}
	n.omitted++
}

func (n *noteList) list() []string {
	if n.omitted == 0 {
		return n.notes
	}
	return append(n.notes, fmt.Sprintf("… and %d more objects left out", n.omitted))
}

// skipList groups left-out envelopes into runs per (space, author, reason).
// It lists the first maxListedSkips runs and counts the rest.
type skipList struct {
	runs        []Skip
	omitted     int            // runs not listed
	last        map[logKey]int // the author's last listed run
	lastOmitted map[logKey]omittedRun
	blocked     map[logKey]bool
}

type omittedRun struct {
	reason string
	to     uint64
}

func newSkipList() *skipList {
	return &skipList{last: map[logKey]int{}, lastOmitted: map[logKey]omittedRun{}, blocked: map[logKey]bool{}}
}

func (s *skipList) add(space crypto.SpaceID, author crypto.DeviceID, seq uint64, reason, msg string) {
	k := logKey{space, author}
	s.blocked[k] = true
	if i, ok := s.last[k]; ok && s.runs[i].Reason == reason && s.runs[i].To+1 == seq {
		s.runs[i].To = seq
		return
	}
	if len(s.runs) >= maxListedSkips {
		delete(s.last, k)
		if o, ok := s.lastOmitted[k]; !ok || o.reason != reason || o.to+1 != seq {
			s.omitted++
		}
		s.lastOmitted[k] = omittedRun{reason, seq}
		return
	}
	s.last[k] = len(s.runs)
	s.runs = append(s.runs, Skip{Space: space.String(), Author: author.String(), From: seq, To: seq, Reason: reason, Message: msg})
}

// isBlocked reports whether an earlier envelope of the author in the space
// was left out: the later ones would follow a gap.
func (s *skipList) isBlocked(space crypto.SpaceID, author crypto.DeviceID) bool {
	return s.blocked[logKey{space, author}]
}

func (s *skipList) list() []Skip {
	if s.runs == nil {
		return []Skip{}
	}
	return s.runs
}
