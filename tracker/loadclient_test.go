package tracker

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The announce load test's client runs in a process of its own (this test binary, started by
// TestAnnounceLoad with loadClientEnv set), so the CPU the trackers' process uses is theirs and
// NATS's alone. It is kept cheap so that on a small machine it leaves the cores to the trackers:
// one keep-alive TCP connection per worker and tracker, every request encoded before the run
// (HTTP/1.1 request line, headers and body in one write), answers read with one buffered reader
// and discarded by their Content-Length.

// loadClientEnv, set in the client process's environment, holds its loadClientConfig as JSON.
const loadClientEnv = "CROWDSURF_TRACKER_LOAD_CLIENT"

// loadClientConfig is what TestAnnounceLoad tells its client process.
type loadClientConfig struct {
	URLs        []string      // announce URLs; peer i announces to URLs[i mod len]
	Peers       int           // peers in the swarm
	Concurrency int           // announces in flight
	Duration    time.Duration // the measured interval
	Change      float64       // share of announces that change state
	Warm        bool          // every peer announces once before the measured interval
}

// loadResult is what the client process reports: latencies are of the measured interval only.
type loadResult struct {
	Announces int64
	Errors    int64
	FirstErr  string
	Elapsed   time.Duration
	P50, P99  time.Duration
	Max       time.Duration
	CPU       time.Duration // the client process's own CPU over the measured interval
}

// Lines the client process writes on stdout for TestAnnounceLoad.
const (
	loadLineMeasuring = "LOAD-MEASURING"
	loadLineResult    = "LOAD-RESULT "
)

// TestAnnounceLoadClient is the client process of TestAnnounceLoad; run by itself it skips.
func TestAnnounceLoadClient(t *testing.T) {
	raw := os.Getenv(loadClientEnv)
	if raw == "" {
		t.Skip("the client process of TestAnnounceLoad (started by it)")
	}
	var cfg loadClientConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatalf("%s: %v", loadClientEnv, err)
	}
	res, err := runLoadClient(cfg, func() { fmt.Println(loadLineMeasuring) })
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(res)
	fmt.Println(loadLineResult + string(b))
}

// loadRequests are one peer's two announces (the states it toggles between), whole HTTP requests.
type loadRequests struct {
	reqs  [2][]byte
	state int
}

func runLoadClient(cfg loadClientConfig, measuring func()) (loadResult, error) {
	n := len(cfg.URLs)
	hosts := make([]string, n)
	paths := make([]string, n)
	for i, raw := range cfg.URLs {
		u, err := url.Parse(raw)
		if err != nil {
			return loadResult{}, err
		}
		hosts[i], paths[i] = u.Host, u.RequestURI()
	}
	peers := make([]loadRequests, cfg.Peers)
	for i := range peers {
		bodies := loadBodies("live", i)
		for v, body := range bodies {
			peers[i].reqs[v] = fmt.Appendf(nil, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
				paths[i%n], hosts[i%n], len(body), body)
		}
	}

	// Worker w announces peers w, w+conc, w+2*conc, ... in turn, so every peer announces at the
	// same cadence, always to the same tracker (peer i to tracker i mod n).
	run := func(d time.Duration, warm bool) (lat []time.Duration, errs int64, firstErr string, elapsed time.Duration) {
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			nErrs atomic.Int64
			first atomic.Value
		)
		deadline := time.Now().Add(d)
		start := time.Now()
		for w := range cfg.Concurrency {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(w), 1))
				conns := make([]*rawHTTPConn, n)
				defer func() {
					for _, c := range conns {
						if c != nil {
							c.close()
						}
					}
				}()
				local := make([]time.Duration, 0, 1<<12)
				var mine []int
				for i := w; i < len(peers); i += cfg.Concurrency {
					mine = append(mine, i)
				}
				for k := 0; len(mine) > 0; k++ {
					if warm && k == len(mine) || !warm && time.Now().After(deadline) {
						break
					}
					i := mine[k%len(mine)]
					p := &peers[i]
					if !warm && rng.Float64() < cfg.Change {
						p.state ^= 1
					}
					l, err := func() (time.Duration, error) {
						c := conns[i%n]
						if c == nil {
							var err error
							if c, err = dialRawHTTP(hosts[i%n]); err != nil {
								return 0, err
							}
							conns[i%n] = c
						}
						l, err := c.roundTrip(p.reqs[p.state])
						if err != nil {
							c.close()
							conns[i%n] = nil
						}
						return l, err
					}()
					if err != nil {
						nErrs.Add(1)
						first.CompareAndSwap(nil, fmt.Sprintf("peer %d: %v", i, err))
						continue
					}
					local = append(local, l)
				}
				mu.Lock()
				lat = append(lat, local...)
				mu.Unlock()
			})
		}
		wg.Wait()
		if e := first.Load(); e != nil {
			firstErr = e.(string)
		}
		return lat, nErrs.Load(), firstErr, time.Since(start)
	}

	if cfg.Warm {
		if _, errs, first, _ := run(0, true); errs > 0 {
			return loadResult{}, fmt.Errorf("warm-up: %d errors, the first: %s", errs, first)
		}
	}
	measuring()
	cpu0 := processCPU()
	lat, errs, first, elapsed := run(cfg.Duration, false)
	res := loadResult{Announces: int64(len(lat)), Errors: errs, FirstErr: first, Elapsed: elapsed, CPU: processCPU() - cpu0}
	slices.Sort(lat)
	q := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	res.P50, res.P99, res.Max = q(0.5), q(0.99), q(1)
	return res, nil
}

// rawHTTPConn is one keep-alive HTTP/1.1 connection that sends prepared requests.
type rawHTTPConn struct {
	conn net.Conn
	r    *bufio.Reader
}

func dialRawHTTP(host string) (*rawHTTPConn, error) {
	c, err := net.DialTimeout("tcp", host, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &rawHTTPConn{conn: c, r: bufio.NewReaderSize(c, 32<<10)}, nil
}

func (c *rawHTTPConn) close() { _ = c.conn.Close() }

// roundTrip writes req and reads its answer, which must be 200; it returns the time between.
func (c *rawHTTPConn) roundTrip(req []byte) (time.Duration, error) {
	start := time.Now()
	if err := c.conn.SetDeadline(start.Add(10 * time.Second)); err != nil {
		return 0, err
	}
	if _, err := c.conn.Write(req); err != nil {
		return 0, err
	}
	status, err := c.readResponse()
	if err != nil {
		return 0, err
	}
	if status != 200 {
		return 0, fmt.Errorf("status %d", status)
	}
	return time.Since(start), nil
}

// readResponse reads one answer's status line and headers and discards its body (by
// Content-Length, or chunked).
func (c *rawHTTPConn) readResponse() (int, error) {
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	length, chunked := -1, false
	for {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil {
				return 0, fmt.Errorf("bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		}
	}
	switch {
	case chunked:
		return status, c.discardChunked()
	case length >= 0:
		_, err = c.r.Discard(length)
		return status, err
	}
	return 0, errors.New("an answer without Content-Length or chunked encoding")
}

func (c *rawHTTPConn) discardChunked() error {
	for {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return err
		}
		size, _, _ := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(";"))
		n, err := strconv.ParseInt(string(size), 16, 32)
		if err != nil {
			return fmt.Errorf("bad chunk size %q", line)
		}
		if n == 0 { // the last chunk; no trailers from the tracker
			_, err := c.r.Discard(2)
			return err
		}
		if _, err := c.r.Discard(int(n) + 2); err != nil {
			return err
		}
	}
}
