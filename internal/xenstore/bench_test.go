package xenstore_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// Each benchmark runs against every kind of store over its unix socket:
// BenchmarkX/embedded, BenchmarkX/xenstored and BenchmarkX/oxenstored.
func forEachStore(b *testing.B, fn func(b *testing.B, c *xenstore.Conn)) {
	for _, kind := range xenstoretest.Kinds() {
		b.Run(kind, func(b *testing.B) { fn(b, xenstoretest.Start(b, kind).Dial(b)) })
	}
}

func BenchmarkRead(b *testing.B) {
	forEachStore(b, func(b *testing.B, c *xenstore.Conn) {
		ctx := context.Background()
		if err := c.Write(ctx, "/bench/r", []byte("value")); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Read(ctx, "/bench/r"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkWrite(b *testing.B) {
	forEachStore(b, func(b *testing.B, c *xenstore.Conn) {
		ctx := context.Background()
		v := []byte("3-1.2")
		b.ReportAllocs()
		for b.Loop() {
			if err := c.Write(ctx, "/bench/w", v); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkTransaction10 is one transaction of ten writes, as a
// controller add makes: start, 10 writes, commit.
func BenchmarkTransaction10(b *testing.B) {
	forEachStore(b, func(b *testing.B, c *xenstore.Conn) {
		ctx := context.Background()
		paths := make([]string, 10)
		for i := range paths {
			paths[i] = fmt.Sprintf("/bench/tx/port/%d", i+1)
		}
		b.ReportAllocs()
		for b.Loop() {
			err := c.Update(ctx, func(ctx context.Context, tx *xenstore.Tx) error {
				for _, p := range paths {
					if err := tx.Write(ctx, p, nil); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkReadMany16 is sixteen reads sent in one write, as an attach's
// look at every port is: one round trip, whose length is the store's time
// for the sixteen (BenchmarkRead is one).
func BenchmarkReadMany16(b *testing.B) {
	forEachStore(b, func(b *testing.B, c *xenstore.Conn) {
		ctx := context.Background()
		paths := make([]string, 16)
		for i := range paths {
			paths[i] = fmt.Sprintf("/bench/many/%d", i)
			if err := c.Write(ctx, paths[i], []byte("3-1.2")); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, errs := c.ReadMany(ctx, paths); errs[0] != nil {
				b.Fatal(errs[0])
			}
		}
	})
}
