package main

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"os"
	"os/exec"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// series is one measurement, taken once per round.
type series struct {
	name  string
	run   func() (time.Duration, error)
	times []time.Duration
	per   int // for a series of means: the items each run averages
}

func (s *series) median() time.Duration {
	t := slices.Clone(s.times)
	slices.Sort(t)
	return t[len(t)/2]
}

// mean is the mean of every run.
func (s *series) mean() time.Duration {
	var sum time.Duration
	for _, t := range s.times {
		sum += t
	}
	return sum / time.Duration(len(s.times))
}

// pairedRatio is the median over rounds of a's time ÷ (scale × b's time
// in the same round).
func pairedRatio(a, b *series, scale float64) float64 {
	n := min(len(a.times), len(b.times))
	r := make([]float64, n)
	for i := range n {
		r[i] = float64(a.times[i]) / (scale * float64(b.times[i]))
	}
	slices.Sort(r)
	if n%2 == 0 {
		return (r[n/2-1] + r[n/2]) / 2
	}
	return r[n/2]
}

// interleave runs every series once per round, in turn, so that a change
// in the machine's load during the run touches every series alike.
func interleave(what string, rounds int, ss ...*series) error {
	for r := 0; r < rounds; r++ {
		fmt.Fprintf(os.Stderr, "bench: %s, round %d/%d\n", what, r+1, rounds)
		for _, s := range ss {
			d, err := s.run()
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			s.times = append(s.times, d)
		}
	}
	return nil
}

// command is a series that times one run of the command mk makes, in a
// fresh temporary directory removed afterwards. check, if not nil, sees
// the directory and the output first (and is not timed).
func command(name string, mk func(dir string) *exec.Cmd, check func(dir string, out []byte) error) *series {
	return &series{name: name, run: func() (time.Duration, error) {
		dir, err := os.MkdirTemp("", "khw-bench")
		if err != nil {
			return 0, err
		}
		defer os.RemoveAll(dir)
		cmd := mk(dir)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		d := time.Since(start)
		if err != nil {
			return 0, fmt.Errorf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
		}
		if check != nil {
			if err := check(dir, out); err != nil {
				return 0, fmt.Errorf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
			}
		}
		return d, nil
	}}
}

// noChange is a check that the run changed nothing.
func noChange(_ string, out []byte) error {
	if !bytes.Contains(out, []byte("No changes.")) {
		return fmt.Errorf("expected a run that changes nothing")
	}
	return nil
}

// keyTime is a series: the mean time of one RSA-2048 key over perRound
// keys made one after another on one goroutine. A key's time varies
// widely (a random prime search); the expected work of n keys is n x the
// mean, so the floor uses the mean over every round (series.mean).
func keyTime(name string, perRound int) *series {
	return &series{name: name, per: perRound, run: func() (time.Duration, error) {
		start := time.Now()
		for i := 0; i < perRound; i++ {
			if _, err := rsa.GenerateKey(rand.Reader, 2048); err != nil {
				return 0, err
			}
		}
		return time.Since(start) / time.Duration(perRound), nil
	}}
}

// parallelKeys generates n RSA-2048 keys on workers goroutines: what any
// tool could do at best on this machine.
func parallelKeys(n, workers int) time.Duration {
	start := time.Now()
	jobs := make(chan int, n)
	for i := 0; i < n; i++ {
		jobs <- i
	}
	close(jobs)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				_, _ = rsa.GenerateKey(rand.Reader, 2048)
			}
		}()
	}
	wg.Wait()
	return time.Since(start)
}

// keygenFlag makes the report a key generator: `report -keygen N` makes N
// keys on every core it may use and prints the nanoseconds it took. Run
// under taskset, it is the bare Go reference for 1 core against 2.
const keygenFlag = "keygen"

func keygenMain(n int) {
	fmt.Println(int64(parallelKeys(n, goruntime.NumCPU())))
}

// pinnedKeys is a series: n keys by this program re-run under `taskset -c
// cpus`, timed by the child itself (its start is not part of the figure).
func pinnedKeys(name, cpus string, n int) *series {
	return &series{name: name, run: func() (time.Duration, error) {
		self, err := os.Executable()
		if err != nil {
			return 0, err
		}
		out, err := exec.Command("taskset", "-c", cpus, self, "-"+keygenFlag, strconv.Itoa(n)).Output()
		if err != nil {
			return 0, fmt.Errorf("taskset -c %s %s -keygen %d: %v", cpus, self, n, err)
		}
		ns, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
		return time.Duration(ns), err
	}}
}

// cpus lists the CPUs this process may run on, in order.
func cpus() []int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil
	}
	var out []int
	for i := 0; i < len(set)*64; i++ {
		if set.IsSet(i) {
			out = append(out, i)
		}
	}
	return out
}

// ms formats a duration for the table: milliseconds below 10 s.
func ms(d time.Duration) string {
	if d >= 10*time.Second {
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
	if d >= time.Second {
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}
