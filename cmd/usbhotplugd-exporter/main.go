package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/usbhotplugd/usbhotplugd/internal/build"
	"github.com/usbhotplugd/usbhotplugd/internal/daemon"
)

// errNoListener: neither systemd nor --listen gave a socket to serve on.
var errNoListener = errors.New("no socket to serve on: start it from usbhotplugd-exporter.socket (systemd socket activation) or give --listen HOST:PORT")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, pflag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "usbhotplugd-exporter:", err)
		os.Exit(1)
	}
}

type options struct {
	listen   string
	stateDir string
	timeout  time.Duration
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("usbhotplugd-exporter", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.listen, "listen", "", "serve on this TCP address (HOST:PORT) rather than on the socket systemd hands over")
	fs.StringVar(&o.stateDir, "state-dir", daemon.DefaultStateDir, "the agent's state directory, which holds its control socket")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "how long a scrape waits for the agent's answer")
	version := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("no arguments are taken (got %q)", fs.Args())
	}
	if *version {
		fmt.Fprintf(stdout, "usbhotplugd-exporter %s (commit %s, %s)\n", build.Version, build.Commit, build.GoVersion())
		return nil
	}
	lns, err := listeners(o.listen)
	if err != nil {
		return err
	}
	log := zerolog.New(stderr).With().Timestamp().Logger()
	return serve(ctx, lns, handler(o, log), log)
}

// listeners are systemd's (LISTEN_FDS), or addr's when given.
func listeners(addr string) ([]net.Listener, error) {
	if addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("--listen: %w", err)
		}
		return []net.Listener{ln}, nil
	}
	lns, err := activation.Listeners()
	if err != nil {
		return nil, fmt.Errorf("socket activation: %w", err)
	}
	var out []net.Listener
	for _, ln := range lns {
		if ln != nil { // a handed-over fd that is not a stream socket
			out = append(out, ln)
		}
	}
	if len(out) == 0 {
		return nil, errNoListener
	}
	return out, nil
}

// handler serves /metrics from a registry of the exporter's own: the
// agent's metrics, and the library's Go and process collectors for the
// exporter itself.
func handler(o options, log zerolog.Logger) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(o.stateDir, o.timeout, log),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: errorLog{log}, ErrorHandling: promhttp.ContinueOnError, Registry: reg, Timeout: o.timeout + 5*time.Second})))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, "<html><head><title>usbhotplugd exporter</title></head><body><a href=\"/metrics\">metrics</a></body></html>\n")
	})
	return mux
}

type errorLog struct{ log zerolog.Logger }

func (e errorLog) Println(v ...any) { e.log.Error().Msg(fmt.Sprint(v...)) }

// serve serves h on every listener until ctx ends, then lets the scrapes
// under way finish.
func serve(ctx context.Context, lns []net.Listener, h http.Handler, log zerolog.Logger) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
	g, gctx := errgroup.WithContext(ctx)
	for _, ln := range lns {
		log.Info().Str("address", ln.Addr().String()).Msg("serving /metrics")
		g.Go(func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	return g.Wait()
}
