// Package baregateway is the bare gRPC-to-HTTP gateway fetchd's benchmarks
// measure it against: the same fetchd.v1.FetchService Fetch, answered by one
// pooled net/http client with no retries, policy, guard, telemetry or log,
// the least any such gateway costs. BenchmarkDaemon (cmd/fetchd) serves it
// in-process; scripts/bench-compare runs it as a process of its own.
package baregateway

import (
	"bytes"
	"context"
	"io"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	fetchdv1 "github.com/fetchd/fetchd/gen/fetchd/v1"
)

// Gateway implements fetchdv1.FetchServiceServer with Client.
type Gateway struct {
	fetchdv1.UnimplementedFetchServiceServer
	Client *http.Client
}

// Fetch sends the request and returns the upstream's status, headers and
// body.
func (g *Gateway) Fetch(ctx context.Context, req *fetchdv1.FetchRequest) (*fetchdv1.FetchResponse, error) {
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
	resp, err := g.Client.Do(hreq)
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
