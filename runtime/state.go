package runtime

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/khw-dev/khw/internal/atomicfile"
)

// StateDir is the workdir's subdirectory that holds khw's own files.
const StateDir = ".khw"

const stateFormat = 1

// ResourceState is what khw recorded when it last applied a resource.
type ResourceState struct {
	Type     string         `json:"type"`
	Name     string         `json:"name"`
	Provider string         `json:"provider"`
	Pos      string         `json:"pos,omitempty"`
	Hash     string         `json:"hash"`
	Inputs   map[string]any `json:"inputs"`
	// Settings are sent to the provider but are not part of the identity.
	Settings map[string]any `json:"settings,omitempty"`
	// Outputs are what the provider reported: file names, fingerprints, MACs.
	// Never a secret.
	Outputs json.RawMessage `json:"outputs,omitempty"`
	// Digest changes whenever the resource's observable result changes.
	Digest string `json:"digest"`
	// Deps are the addresses it referred to, with their digests at the time.
	Deps map[string]string `json:"deps,omitempty"`
	// After are the addresses it was ordered after (Resource.After), so
	// that a deletion still goes before them.
	After []string `json:"after,omitempty"`
	// (Older khw versions also wrote "update_in_place", a copy of the
	// type's rule that nothing read; the provider's schema is its one
	// source. The reader ignores the field.)
}

// Addr is the recorded resource's address.
func (s *ResourceState) Addr() string { return s.Type + "." + s.Name }

// follows is true when the resource was applied after addr (it referred to
// it, or was ordered after it): a deletion of both deletes it first.
func (s *ResourceState) follows(addr string) bool {
	if _, ok := s.Deps[addr]; ok {
		return true
	}
	for _, a := range s.After {
		if a == addr {
			return true
		}
	}
	return false
}

// State is every resource khw has applied in one workdir.
type State struct {
	Format    int                       `json:"format"`
	Serial    int                       `json:"serial"`
	Resources map[string]*ResourceState `json:"resources"`
	// Params are the recipe parameters the last run was given (--set, a
	// values file, or recorded before), as text by name: a later run
	// without them uses these, so that a lab made with
	// --set hypervisor=docker is not planned away by a plain khw plan.
	// Parameters left at their defaults are not recorded.
	Params map[string]string `json:"params,omitempty"`
}

// Store keeps the state of one workdir and holds the workdir's lock while
// a run may change it.
//
// Every change is appended, synced, to a journal (state.journal) before
// Put returns, so that a run killed at any point loses at most the
// resource in flight, and recording a resource costs the same however
// many are recorded already. The journal is folded into the snapshot
// (state.json, written atomically) whenever it has grown as large as the
// snapshot, and at the end of a run (Compact): the bytes written per run
// grow linearly with the lab, where rewriting the whole state after every
// resource grew with its square. state.json alone is therefore complete
// after a run, and during one at most the last half of its changes
// behind; OpenStore reads both.
type Store struct {
	workdir string
	mu      sync.Mutex
	state   *State
	lock    *os.File
	journal *os.File // open for appending while locked, once written

	snapshotBytes int64 // state.json's size
	journalBytes  int64 // the journal's whole lines
	written       int64 // bytes this Store wrote, for make bench
}

// journalEntry is one line of the journal: a resource recorded, or
// removed when State is null; or, with no Addr, the parameters recorded.
type journalEntry struct {
	Serial int            `json:"serial"`
	Addr   string         `json:"addr,omitempty"`
	State  *ResourceState `json:"state,omitempty"`
	// SetParams marks an entry that replaces State.Params with Params.
	SetParams bool              `json:"set_params,omitempty"`
	Params    map[string]string `json:"params,omitempty"`
}

// OpenStore reads the state in workdir. A missing workdir or state file is
// an empty state; nothing is created.
func OpenStore(workdir string) (*Store, error) {
	s := &Store{workdir: workdir, state: &State{Format: stateFormat, Resources: map[string]*ResourceState{}}}
	b, err := os.ReadFile(s.path())
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		st, err := ParseState(b)
		if err != nil {
			return nil, fmt.Errorf("state %s: %w", s.path(), err)
		}
		s.state, s.snapshotBytes = st, int64(len(b))
	}
	if err := s.replay(); err != nil {
		return nil, err
	}
	return s, nil
}

// replay applies the journal's entries newer than the snapshot. A last
// line without its newline is a write cut short by a kill: its Put never
// returned, so it is not part of the state.
func (s *Store) replay() error {
	b, err := os.ReadFile(s.journalPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	whole := bytes.LastIndexByte(b, '\n') + 1
	for i, line := range bytes.Split(b[:whole], []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var e journalEntry
		if err := json.Unmarshal(line, &e); err != nil || (e.Addr == "") != e.SetParams || (e.State != nil && e.State.Addr() != e.Addr) {
			return fmt.Errorf("state journal %s, line %d: not a khw journal entry", s.journalPath(), i+1)
		}
		if e.Serial <= s.state.Serial {
			continue // folded into the snapshot already
		}
		if e.SetParams {
			s.state.Params = e.Params
		} else if e.State == nil {
			delete(s.state.Resources, e.Addr)
		} else {
			s.state.Resources[e.Addr] = e.State
		}
		s.state.Serial = e.Serial
	}
	s.journalBytes = int64(whole)
	return nil
}

// ParseState decodes and checks a state file.
func ParseState(b []byte) (*State, error) {
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("not a khw state file: %v", err)
	}
	if st.Format != stateFormat {
		return nil, fmt.Errorf("state format %d is not the %d this khw reads", st.Format, stateFormat)
	}
	if st.Resources == nil {
		st.Resources = map[string]*ResourceState{}
	}
	for addr, r := range st.Resources {
		if r == nil || r.Addr() != addr {
			return nil, fmt.Errorf("state entry %q does not match its resource", addr)
		}
	}
	return &st, nil
}

func (s *Store) path() string { return filepath.Join(s.workdir, StateDir, "state.json") }

func (s *Store) journalPath() string { return filepath.Join(s.workdir, StateDir, "state.journal") }

// Get returns the recorded state of addr, or nil.
func (s *Store) Get(addr string) *ResourceState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state.Resources[addr]
}

// Addrs lists every recorded address, sorted.
func (s *Store) Addrs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.state.Resources))
	for a := range s.state.Resources {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// Put records a resource (nil removes it): appended to the journal and
// synced before it returns.
func (s *Store) Put(addr string, rs *ResourceState) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rs == nil {
		delete(s.state.Resources, addr)
	} else {
		s.state.Resources[addr] = rs
	}
	return s.record(journalEntry{Addr: addr, State: rs})
}

// Params returns the recorded parameters (nil when none were).
func (s *Store) Params() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.state.Params)
}

// SetParams records the parameters a run was given (nil forgets them),
// journalled like a resource. The same parameters again write nothing.
func (s *Store) SetParams(p map[string]string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(p) == 0 {
		p = nil
	}
	if maps.Equal(p, s.state.Params) {
		return nil
	}
	s.state.Params = maps.Clone(p)
	return s.record(journalEntry{SetParams: true, Params: p})
}

// record journals a change already made to s.state (or folds everything
// into the snapshot when the journal has grown as large as it). Called
// with s.mu held.
func (s *Store) record(e journalEntry) error {
	s.state.Serial++
	if s.journalBytes >= s.snapshotBytes {
		return s.save()
	}
	e.Serial = s.state.Serial
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return s.appendJournal(append(line, '\n'))
}

func (s *Store) appendJournal(line []byte) error {
	if s.journal == nil {
		if err := os.MkdirAll(filepath.Dir(s.journalPath()), 0o700); err != nil {
			return err
		}
		f, err := os.OpenFile(s.journalPath(), os.O_WRONLY|os.O_CREATE, 0o600)
		if err != nil {
			return err
		}
		// Past the last whole line: a torn one is written over.
		if _, err := f.Seek(s.journalBytes, 0); err != nil {
			f.Close()
			return err
		}
		s.journal = f
	}
	if _, err := s.journal.Write(line); err != nil {
		return err
	}
	if err := s.journal.Sync(); err != nil {
		return err
	}
	s.journalBytes += int64(len(line))
	s.written += int64(len(line))
	return nil
}

// Compact folds the journal into state.json, if there is one. A run calls
// it when it ends; Lock calls it for a journal a killed run left.
func (s *Store) Compact() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.journalBytes == 0 {
		if _, err := os.Stat(s.journalPath()); err != nil {
			return nil
		}
	}
	return s.save()
}

// Written is how many bytes of state this Store has written (make bench).
func (s *Store) Written() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.written
}

// save writes the whole state to state.json, atomically, then removes the
// journal; a kill in between leaves entries that the snapshot's serial
// skips.
func (s *Store) save() error {
	b, err := encodeState(s.state)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.path()), 0o700); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(s.path(), b, 0o600); err != nil {
		return err
	}
	s.snapshotBytes = int64(len(b))
	s.written += int64(len(b))
	if s.journal != nil {
		s.journal.Close()
		s.journal = nil
	}
	s.journalBytes = 0
	if err := os.Remove(s.journalPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// encodeState is the state file's text, which ParseState reads back.
func encodeState(st *State) ([]byte, error) {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Lock takes the workdir's lock, creating the workdir (0700) if needed. A
// second run on the same workdir is refused while the first holds it; the
// kernel releases the lock when the holder dies, even by SIGKILL.
func (s *Store) Lock() error {
	dir := filepath.Join(s.workdir, StateDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(s.workdir, 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		who := "another khw run"
		if pid := lockHolder(f); pid > 0 {
			who = fmt.Sprintf("another khw run (pid %d)", pid)
		}
		f.Close()
		return fmt.Errorf("workdir %s is locked by %s: two runs on one workdir would corrupt it; wait for that run to end or stop it", s.workdir, who)
	}
	s.lock = f
	// What a run killed between writing a file and renaming it left.
	atomicfile.RemoveStale(s.workdir, dir)
	// What a killed run left in the journal: read again under the lock,
	// then folded into the snapshot.
	fresh, err := OpenStore(s.workdir)
	if err != nil {
		s.Unlock()
		return err
	}
	s.mu.Lock()
	s.state, s.snapshotBytes, s.journalBytes = fresh.state, fresh.snapshotBytes, fresh.journalBytes
	s.mu.Unlock()
	if err := s.Compact(); err != nil {
		s.Unlock()
		return err
	}
	return nil
}

// Unlock releases the lock taken by Lock.
func (s *Store) Unlock() {
	s.mu.Lock()
	if s.journal != nil {
		s.journal.Close()
		s.journal = nil
	}
	s.mu.Unlock()
	if s.lock != nil {

		_ = syscall.Flock(int(s.lock.Fd()), syscall.LOCK_UN)
		s.lock.Close()
		s.lock = nil
	}
}

// lockHolder finds the pid holding a flock on f in /proc/locks. The lock
// file itself is never written, so a run that changes nothing leaves every
// file in the workdir, mtimes included, as it was.
func lockHolder(f *os.File) int {
	var st syscall.Stat_t
	if syscall.Fstat(int(f.Fd()), &st) != nil {
		return 0
	}
	data, err := os.ReadFile("/proc/locks")
	if err != nil {
		return 0
	}
	// "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"
	want := ":" + strconv.FormatUint(st.Ino, 10)
	for _, line := range strings.Split(string(data), "\n") {
		fs := strings.Fields(line)
		if len(fs) >= 6 && fs[1] == "FLOCK" && strings.HasSuffix(fs[5], want) {
			if pid, err := strconv.Atoi(fs[4]); err == nil {
				return pid
			}
		}
	}
	return 0
}
