package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	fetchdv1 "github.com/fetchd/fetchd/gen/fetchd/v1"
)

// forwarder is the bare gateway fetchd is judged against: the same
// fetchd.v1.FetchService Fetch over grpc-go's defaults, answered by one
// pooled net/http client with no retries, policy, guard or telemetry.
type forwarder struct {
	fetchdv1.UnimplementedFetchServiceServer
	client *http.Client
}

func newForwarder() *forwarder {
	return &forwarder{client: &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 20000,
		IdleConnTimeout:     90 * time.Second,
	}}}
}

// Fetch sends the request and returns the upstream's status, headers and
// body.
func (f *forwarder) Fetch(ctx context.Context, req *fetchdv1.FetchRequest) (*fetchdv1.FetchResponse, error) {
	method := req.GetMethod()
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if len(req.GetBody()) > 0 {
		body = bytes.NewReader(req.GetBody())
	}
	hreq, err := http.NewRequestWithContext(ctx, method, req.GetUrl(), body)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	for _, h := range req.GetHeaders() {
		hreq.Header.Add(h.GetName(), h.GetValue())
	}
	resp, err := f.client.Do(hreq)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	headers := make([]*fetchdv1.Header, 0, len(resp.Header))
	for name, values := range resp.Header {
		for _, v := range values {
			headers = append(headers, &fetchdv1.Header{Name: name, Value: v})
		}
	}
	return &fetchdv1.FetchResponse{Status: uint32(resp.StatusCode), Headers: headers, Body: b}, nil
}

// forwarderCommand is `benchcompare forwarder -listen ADDR`: it serves the
// forwarder, prints the address it listens on as the first line of stdout,
// and stops on SIGTERM or SIGINT.
func forwarderCommand(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("forwarder", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "gRPC listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	fetchdv1.RegisterFetchServiceServer(srv, newForwarder())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Stop()
	}()
	if _, err := fmt.Fprintln(stdout, ln.Addr().String()); err != nil {
		return err
	}
	return srv.Serve(ln)
}
