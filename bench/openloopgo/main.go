// Command openloopgo is bench/openloop.py's open-loop generator, compiled: POSTs on a fixed
// timetable at a constant rate, each request's latency measured from the time it was DUE
// (not sent), so a stall of the server shows up in every request due during it (no
// coordinated omission). Waiting for a free connection, or the generator falling behind its
// timetable, counts against the server: the figure can only be pessimistic; lag_p99_ms says
// how late the generator itself sent. Standard library only, so `go build` needs no network.
//
// Usage: openloopgo -url URL -body FILE -rate REQ_PER_S -seconds S [-connections N]
// [-samples FILE]. Prints one JSON object with bench/openloop.py's field names; -samples
// writes "due latency ok" per request (due on CLOCK_MONOTONIC, as Python's time.monotonic).
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"sort"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

type outcome struct {
	due     time.Time
	latency time.Duration
	ok      bool
	err     error // no HTTP answer at all (connection refused or reset, timeout)
}

// monotonicNow reads CLOCK_MONOTONIC as Python's time.monotonic() does, so the samples' due
// times line up with the other probes' clocks (bench/jvmgc.py, bench/openloop_tail.py).
func monotonicNow() float64 {
	var ts syscall.Timespec
	_, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 1, uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		fail("clock_gettime: %v", errno)
	}
	return float64(ts.Sec) + float64(ts.Nsec)/1e9
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "openloopgo: "+format+"\n", args...)
	os.Exit(2)
}

// percentile is the nearest-rank percentile of sorted values (as bench/openloop.py's).
func percentile(sorted []float64, share float64) float64 {
	i := int(math.Ceil(share*float64(len(sorted)))) - 1
	return sorted[max(0, i)]
}

func main() {
	url := flag.String("url", "", "where to POST")
	bodyPath := flag.String("body", "", "file holding the request body")
	rate := flag.Float64("rate", 0, "requests per second, constant")
	seconds := flag.Float64("seconds", 10, "how long to offer the load")
	connections := flag.Int("connections", 256, "most connections open at once")
	samplesPath := flag.String("samples", "", "optional file for one line per request")
	auth := flag.String("authorization", "Basic ZGV2LXdyaXRlLWtleTo=", "Authorization header")
	flag.Parse()
	if *url == "" || *bodyPath == "" || *rate <= 0 || *seconds <= 0 || *connections <= 0 {
		fail("need -url, -body, a positive -rate, -seconds and -connections")
	}
	body, err := os.ReadFile(*bodyPath)
	if err != nil {
		fail("reading the body: %v", err)
	}
	client := &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxConnsPerHost:     *connections,
			MaxIdleConnsPerHost: *connections,
			DisableCompression:  true,
			// under uvicorn's 5 s keep-alive: the client closes an idle connection first, so
			// a POST never races the server closing it (a failure that would be the generator's)
			IdleConnTimeout: 4 * time.Second,
		},
	}

	total := int(*rate * *seconds)
	outcomes := make([]outcome, total)
	lags := make([]float64, total)
	var wg sync.WaitGroup
	send := func(i int, due time.Time) {
		defer wg.Done()
		ok := false
		request, err := http.NewRequest(http.MethodPost, *url, bytes.NewReader(body))
		if err == nil {
			request.Header.Set("Content-Type", "application/json")
			request.Header.Set("Authorization", *auth)
			var response *http.Response
			if response, err = client.Do(request); err == nil {
				_, err = io.Copy(io.Discard, response.Body)
				response.Body.Close()
				ok = err == nil && response.StatusCode >= 200 && response.StatusCode < 300
			}
		}
		outcomes[i] = outcome{due: due, latency: time.Since(due), ok: ok, err: err}
	}

	monoStart, start := monotonicNow(), time.Now()
	start = start.Add(50 * time.Millisecond)
	monoStart += 0.05
	for i := 0; i < total; i++ {
		due := start.Add(time.Duration(float64(i) * float64(time.Second) / *rate))
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		}
		lags[i] = max(0, time.Since(due).Seconds())
		wg.Add(1)
		go send(i, due)
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()

	latencies := make([]float64, total)
	failures, transportErrors := 0, 0
	for i, o := range outcomes {
		latencies[i] = o.latency.Seconds()
		if !o.ok {
			failures++
		}
		if o.err != nil {
			if transportErrors == 0 {
				fmt.Fprintf(os.Stderr, "openloopgo: first request without an answer: %v\n", o.err)
			}
			transportErrors++
		}
	}
	if *samplesPath != "" {
		var out bytes.Buffer
		for _, o := range outcomes {
			fmt.Fprintf(&out, "%.6f %.6f %t\n", monoStart+o.due.Sub(start).Seconds(), o.latency.Seconds(), o.ok)
		}
		if err := os.WriteFile(*samplesPath, out.Bytes(), 0o644); err != nil {
			fail("writing the samples: %v", err)
		}
	}
	sort.Float64s(latencies)
	sort.Float64s(lags)
	result := map[string]float64{
		"offered_requests_per_s": *rate,
		"requests":               float64(total),
		"answered_per_s":         float64(total) / elapsed,
		"p50_ms":                 percentile(latencies, 0.50) * 1000,
		"p99_ms":                 percentile(latencies, 0.99) * 1000,
		"p999_ms":                percentile(latencies, 0.999) * 1000,
		"max_ms":                 latencies[total-1] * 1000,
		"non_2xx":                float64(failures), // every request without a 2xx, as bench/openloop.py
		"transport_errors":       float64(transportErrors),
		"lag_p99_ms":             percentile(lags, 0.99) * 1000,
	}
	if err := json.NewEncoder(os.Stdout).Encode(result); err != nil {
		fail("writing the result: %v", err)
	}
}
