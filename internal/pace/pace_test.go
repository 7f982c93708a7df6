package pace

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

func TestUntilWaitsForTheDueTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		timer := time.NewTimer(time.Hour)
		timer.Stop()
		start := time.Now()
		for i := 1; i <= 3; i++ {
			if !Until(context.Background(), timer, start.Add(time.Duration(i)*time.Second)) {
				t.Fatal("Until said stop with a live context")
			}
			if got := time.Since(start); got != time.Duration(i)*time.Second {
				t.Fatalf("wait %d returned after %v", i, got)
			}
		}
		if !Until(context.Background(), timer, start) {
			t.Fatal("a due time in the past said stop")
		}
		if time.Since(start) != 3*time.Second {
			t.Fatal("a due time in the past waited")
		}
	})
}

func TestUntilStopsWhenTheContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		timer := time.NewTimer(time.Hour)
		start := time.Now()
		if Until(ctx, timer, start.Add(time.Minute)) {
			t.Fatal("Until said go on after the context ended")
		}
		if got := time.Since(start); got != time.Second {
			t.Fatalf("returned after %v, want the context's second", got)
		}
		if Until(ctx, timer, start) {
			t.Fatal("a past due time with an ended context said go on")
		}
	})
}

func TestSleep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		if !Sleep(context.Background(), 2*time.Second) || time.Since(start) != 2*time.Second {
			t.Fatalf("Sleep(2s) returned after %v", time.Since(start))
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if Sleep(ctx, time.Second) || time.Since(start) != 2*time.Second {
			t.Fatal("Sleep with an ended context waited or said go on")
		}
	})
}
