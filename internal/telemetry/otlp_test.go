package telemetry

import (
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// grpcReceiver is an OTLP/gRPC trace collector on 127.0.0.1:0.
type grpcReceiver struct {
	coltracepb.UnimplementedTraceServiceServer
	addr string
	got  chan grpcExport
}

type grpcExport struct {
	spans []*tracepb.ResourceSpans
	md    metadata.MD
}

func startGRPCReceiver(t *testing.T) *grpcReceiver {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &grpcReceiver{addr: lis.Addr().String(), got: make(chan grpcExport, 64)}
	s := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(s, r)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return r
}

func (r *grpcReceiver) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	r.got <- grpcExport{req.GetResourceSpans(), md}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// endSpan makes a CLIENT span named GET with attributes and an error
// status, and returns its trace ID.
func endSpan(t *testing.T, tel *Telemetry) trace.TraceID {
	t.Helper()
	_, span := tel.TracerProvider().Tracer("fetchd/test").Start(t.Context(), "GET",
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("server.address", "example.com"),
			attribute.Int("http.response.status_code", 503),
		))
	span.SetStatus(codes.Error, "")
	span.End()
	return span.SpanContext().TraceID()
}

func checkSpan(t *testing.T, rss []*tracepb.ResourceSpans, traceID trace.TraceID, service string) {
	t.Helper()
	spans := flatten(rss)
	if len(spans) != 1 {
		t.Fatalf("received %d spans, want 1", len(spans))
	}
	s := spans[0]
	if s.span.GetName() != "GET" || s.span.GetKind() != tracepb.Span_SPAN_KIND_CLIENT {
		t.Errorf("span %q kind %v, want GET CLIENT", s.span.GetName(), s.span.GetKind())
	}
	if got := trace.TraceID(s.span.GetTraceId()); got != traceID {
		t.Errorf("trace ID %s, want %s", got, traceID)
	}
	if got := attr(s.span.GetAttributes(), "server.address").GetStringValue(); got != "example.com" {
		t.Errorf("server.address = %q", got)
	}
	if got := attr(s.span.GetAttributes(), "http.response.status_code").GetIntValue(); got != 503 {
		t.Errorf("http.response.status_code = %d", got)
	}
	if s.span.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("status = %v, want error", s.span.GetStatus())
	}
	if got := attr(s.resource, "service.name").GetStringValue(); got != service {
		t.Errorf("service.name = %q, want %q", got, service)
	}
}

// A span ended before Shutdown reaches a real OTLP/gRPC collector, with the
// resource, attributes and headers the environment configured.
func TestOTLPGRPCExport(t *testing.T) {
	t.Parallel()
	r := startGRPCReceiver(t)
	tel, buf := setup(t, map[string]string{
		envOTLPPrefix + "ENDPOINT": "http://" + r.addr,
		envOTLPPrefix + "PROTOCOL": "grpc",
		envOTLPPrefix + "HEADERS":  "x-api-key=not%20logged,x-tenant=t1",
		envServiceName:             "fetchd-test",
		envResourceAttributes:      "deployment.environment.name=ci",
	})
	if got, want := tel.Exporting(), "otlp (grpc) to http://"+r.addr; got != want {
		t.Errorf("Exporting() = %q, want %q", got, want)
	}
	traceID := endSpan(t, tel)
	if err := tel.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	var got grpcExport
	select {
	case got = <-r.got:
	default:
		t.Fatal("Shutdown returned before the span reached the collector")
	}
	checkSpan(t, got.spans, traceID, "fetchd-test")
	if v := attr(flatten(got.spans)[0].resource, "deployment.environment.name").GetStringValue(); v != "ci" {
		t.Errorf("deployment.environment.name = %q, want ci", v)
	}
	if v := got.md.Get("x-api-key"); len(v) != 1 || v[0] != "not logged" {
		t.Errorf("x-api-key metadata = %q", v)
	}
	if v := got.md.Get("x-tenant"); len(v) != 1 || v[0] != "t1" {
		t.Errorf("x-tenant metadata = %q", v)
	}
	if out := buf.String(); out != "" {
		t.Errorf("unexpected log:\n%s", out)
	}
}

// httpExport is one request an OTLP/HTTP receiver decoded.
type httpExport struct {
	path, contentType, encoding, auth string
	spans                             []*tracepb.ResourceSpans
}

// startHTTPReceiver serves OTLP/HTTP (protobuf or JSON, optionally gzip)
// on any path, answering status; tls selects an HTTPS server.
func startHTTPReceiver(t *testing.T, status int, useTLS bool) (*httptest.Server, chan httpExport) {
	t.Helper()
	got := make(chan httpExport, 64)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ex := httpExport{
			path: r.URL.Path, contentType: r.Header.Get("Content-Type"),
			encoding: r.Header.Get("Content-Encoding"), auth: r.Header.Get("Authorization"),
		}
		body := io.Reader(r.Body)
		if ex.encoding == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		b, err := io.ReadAll(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var req coltracepb.ExportTraceServiceRequest
		if ex.contentType == "application/json" {
			err = protojson.Unmarshal(b, &req)
			hexIDs(req.GetResourceSpans())
		} else {
			err = proto.Unmarshal(b, &req)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ex.spans = req.GetResourceSpans()
		got <- ex
		if status != http.StatusOK {
			http.Error(w, "refused by the test", status)
		}
	})
	var srv *httptest.Server
	if useTLS {
		srv = httptest.NewUnstartedServer(h)
		srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		srv.StartTLS()
	} else {
		srv = httptest.NewServer(h)
	}
	t.Cleanup(srv.Close)
	return srv, got
}

func TestOTLPHTTPExport(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                      string
		env                       func(url string) map[string]string
		path, contentType, encode string
		exporting                 string
	}{
		{
			name: "default protocol, generic endpoint gets /v1/traces",
			env: func(u string) map[string]string {
				return map[string]string{envOTLPPrefix + "ENDPOINT": u + "/otlp"}
			},
			path: "/otlp/v1/traces", contentType: "application/x-protobuf",
			exporting: "otlp (http/protobuf) to %s/otlp/v1/traces",
		},
		{
			name: "traces endpoint as is, json, gzip, traces protocol wins",
			env: func(u string) map[string]string {
				return map[string]string{
					envOTLPPrefix + "ENDPOINT":          "http://127.0.0.1:1",
					envOTLPTracesPrefix + "ENDPOINT":    u + "/custom",
					envOTLPPrefix + "PROTOCOL":          "grpc",
					envOTLPTracesPrefix + "PROTOCOL":    "http/json",
					envOTLPTracesPrefix + "COMPRESSION": "gzip",
					envOTLPPrefix + "HEADERS":           "Authorization=Bearer%20secret-token",
				}
			},
			path: "/custom", contentType: "application/json", encode: "gzip",
			exporting: "otlp (http/json) to %s/custom",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, got := startHTTPReceiver(t, http.StatusOK, false)
			m := tt.env(srv.URL)
			m[envServiceName] = "fetchd-test"
			tel, buf := setup(t, m)
			if want := strings.Replace(tt.exporting, "%s", srv.URL, 1); tel.Exporting() != want {
				t.Errorf("Exporting() = %q, want %q", tel.Exporting(), want)
			}
			traceID := endSpan(t, tel)
			if err := tel.Shutdown(t.Context()); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			var ex httpExport
			select {
			case ex = <-got:
			default:
				t.Fatal("Shutdown returned before the span reached the collector")
			}
			if ex.path != tt.path || ex.contentType != tt.contentType || ex.encoding != tt.encode {
				t.Errorf("request path %q type %q encoding %q, want %q %q %q",
					ex.path, ex.contentType, ex.encoding, tt.path, tt.contentType, tt.encode)
			}
			checkSpan(t, ex.spans, traceID, "fetchd-test")
			if h := m[envOTLPPrefix+"HEADERS"]; h != "" && ex.auth != "Bearer secret-token" {
				t.Errorf("Authorization = %q", ex.auth)
			}
			if out := buf.String(); out != "" {
				t.Errorf("unexpected log:\n%s", out)
			}
		})
	}
}

// OTEL_EXPORTER_OTLP_CERTIFICATE makes the exporter trust a collector's
// private CA; without it the same export fails verification.
func TestOTLPHTTPSCertificate(t *testing.T) {
	t.Parallel()
	srv, got := startHTTPReceiver(t, http.StatusOK, true)
	file := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, trust := range []bool{true, false} {
		m := map[string]string{envOTLPTracesPrefix + "ENDPOINT": srv.URL + "/v1/traces"}
		if trust {
			m[envOTLPPrefix+"CERTIFICATE"] = file
		}
		tel, _ := setup(t, m)
		endSpan(t, tel)
		err := tel.Shutdown(t.Context())
		var exportErr *ExportError
		switch {
		case trust && err != nil:
			t.Errorf("with the CA: Shutdown: %v", err)
		case trust && len(got) != 1:
			t.Errorf("with the CA: the collector got %d requests, want 1", len(got))
		case !trust && !errors.As(err, &exportErr):
			t.Errorf("without the CA: Shutdown = %v, want an *ExportError", err)
		case !trust && !errors.As(err, new(*tls.CertificateVerificationError)):
			t.Errorf("without the CA: Shutdown = %v, want a certificate verification error", err)
		}
	}
	if len(got) != 1 {
		t.Errorf("the collector got %d requests in all, want 1", len(got))
	}
}

// Export failures go to the logger once per run of failures, the recovery
// is logged with what was dropped, and a failure that lasts to the end is
// Shutdown's *ExportError; nothing carries the header values.
func TestExportFailuresLogged(t *testing.T) {
	t.Parallel()
	var status = make(chan int, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(<-status)
	}))
	t.Cleanup(srv.Close)
	tel, buf := setup(t, map[string]string{
		envOTLPPrefix + "ENDPOINT": srv.URL,
		envOTLPPrefix + "HEADERS":  "authorization=Bearer%20hush",
	})
	flush := func(code int) {
		t.Helper()
		status <- code
		endSpan(t, tel)
		if err := tel.tp.ForceFlush(t.Context()); err != nil {
			t.Fatalf("ForceFlush: %v", err)
		}
	}
	flush(http.StatusBadRequest)
	flush(http.StatusUnauthorized)
	if n := buf.count("trace export failed"); n != 1 {
		t.Errorf("failure logged %d times over two failed batches, want once:\n%s", n, buf)
	}
	flush(http.StatusOK)
	if n := buf.count("trace export recovered"); n != 1 || !strings.Contains(buf.String(), "dropped_batches=2 dropped_spans=2") {
		t.Errorf("recovery not logged with what was dropped:\n%s", buf)
	}
	status <- http.StatusInternalServerError // not retried by the exporter, unlike 429, 502, 503, 504
	endSpan(t, tel)
	err := tel.Shutdown(t.Context())
	var exportErr *ExportError
	if !errors.As(err, &exportErr) || exportErr.Batches != 1 || exportErr.Spans != 1 {
		t.Fatalf("Shutdown = %v, want an *ExportError for 1 batch of 1 span", err)
	}
	if !strings.Contains(exportErr.Exporter, srv.URL) {
		t.Errorf("ExportError.Exporter = %q, want it to name %s", exportErr.Exporter, srv.URL)
	}
	if n := buf.count("trace export failed"); n != 2 {
		t.Errorf("failures logged %d times over two runs, want 2:\n%s", n, buf)
	}
	if strings.Contains(buf.String()+err.Error(), "hush") {
		t.Errorf("a header value reached the log or the error:\n%s\n%v", buf, err)
	}
}

// hexIDs repairs the IDs protojson decoded: OTLP/JSON writes trace and span
// IDs as hex, where protojson expects base64.
func hexIDs(rss []*tracepb.ResourceSpans) {
	fix := func(b []byte) []byte {
		id, _ := hex.DecodeString(base64.StdEncoding.EncodeToString(b))
		return id
	}
	for _, s := range flatten(rss) {
		s.span.TraceId, s.span.SpanId = fix(s.span.TraceId), fix(s.span.SpanId)
	}
}
