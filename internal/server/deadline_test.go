package server

import (
	"context"
	"errors"
	"testing"
	"time"
)

type ctxKey struct{}

func TestLazyTimeout_Unused(t *testing.T) {
	parent := context.WithValue(context.Background(), ctxKey{}, "v")
	ctx := withLazyTimeout(parent, time.Hour)
	cancel := ctx.stop
	if d, ok := ctx.Deadline(); !ok || time.Until(d) < 59*time.Minute {
		t.Errorf("Deadline() = %v, %v; want about an hour from now", d, ok)
	}
	if ctx.Value(ctxKey{}) != "v" {
		t.Error("the parent's value is lost")
	}
	if ctx.ctx.Load() != nil {
		t.Error("Deadline and Value made the deadline context")
	}
	cancel()
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Errorf("Err() after cancel = %v, want Canceled", ctx.Err())
	}
	select {
	case <-ctx.Done():
	default:
		t.Error("Done() not closed after cancel")
	}
	if ctx.Value(ctxKey{}) != "v" {
		t.Error("the parent's value is lost after cancel")
	}
}

func TestLazyTimeout_Expires(t *testing.T) {
	ctx := withLazyTimeout(context.Background(), 20*time.Millisecond)
	cancel := ctx.stop
	defer cancel()
	if ctx.Err() != nil {
		t.Fatalf("Err() = %v before the deadline", ctx.Err())
	}
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done() not closed 5s after a 20ms timeout")
	}
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Errorf("Err() = %v, want DeadlineExceeded", ctx.Err())
	}
}

func TestLazyTimeout_ParentAndChildren(t *testing.T) {
	parent, cancelParent := context.WithTimeout(context.Background(), time.Minute)
	ctx := withLazyTimeout(parent, time.Hour)
	cancel := ctx.stop
	if d, _ := ctx.Deadline(); time.Until(d) > 2*time.Minute {
		t.Errorf("Deadline() = %v; want the parent's earlier one", d)
	}
	child, cancelChild := context.WithTimeout(ctx, time.Hour)
	defer cancelChild()
	cancelParent()
	select {
	case <-child.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the parent's cancellation did not reach a child")
	}
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Errorf("Err() = %v, want Canceled from the parent", ctx.Err())
	}
	cancel()

	// A child made before cancel ends with it.
	ctx2 := withLazyTimeout(context.Background(), time.Hour)
	cancel2 := ctx2.stop
	child2, cancelChild2 := context.WithCancel(ctx2)
	defer cancelChild2()
	cancel2()
	select {
	case <-child2.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("cancel did not reach a child")
	}
}
