package telemetry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// OTLP protocols (OTEL_EXPORTER_OTLP_PROTOCOL).
const (
	protoGRPC         = "grpc"
	protoHTTPProtobuf = "http/protobuf"
	protoHTTPJSON     = "http/json"
)

// defaultOTLPTimeout is the specification's OTEL_EXPORTER_OTLP_TIMEOUT.
const defaultOTLPTimeout = 10 * time.Second

// exporterNames returns the trace exporters the environment asks for, in
// order and without duplicates: none unless OTEL_TRACES_EXPORTER names one
// other than "none", or it is unset and an OTLP endpoint is set (then
// "otlp"). OTEL_SDK_DISABLED=true turns export off whatever else is set.
func (e env) exporterNames() []string {
	if e.bool(envSDKDisabled) {
		return nil
	}
	v := e.str(envTracesExporter)
	if v == "" {
		if ep, _ := e.otlp("ENDPOINT"); ep != "" {
			return []string{"otlp"}
		}
		return nil
	}
	var names []string
	for _, n := range strings.Split(v, ",") {
		n = strings.ToLower(strings.TrimSpace(n))
		switch n {
		case "", "none":
		case "otlp", "console":
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		default:
			e.ignore(envTracesExporter, n, "is not a trace exporter fetchd has (otlp, console, none)", "the others listed")
		}
	}
	return names
}

// exporter is a span exporter and how it is described in the startup log.
type exporter struct {
	sdktrace.SpanExporter
	desc string
}

// newExporter builds the exporter called name ("otlp" or "console").
// Neither connects anywhere before the first export.
func (e env) newExporter(ctx context.Context, name string, console io.Writer) (exporter, error) {
	if name == "console" {
		exp, err := stdouttrace.New(stdouttrace.WithWriter(console))
		if err != nil {
			return exporter{}, fmt.Errorf("telemetry: console exporter: %w", err)
		}
		return exporter{exp, "console"}, nil
	}
	return e.otlpExporter(ctx)
}

// otlpExporter builds the OTLP trace exporter from the OTEL_EXPORTER_OTLP_*
// variables (each overridden by its OTEL_EXPORTER_OTLP_TRACES_* form):
//
//   - PROTOCOL: grpc, http/protobuf (the specification's default, also
//     autoexport's) or http/json.
//   - ENDPOINT: a URL; default http://localhost:4317 for grpc and
//     http://localhost:4318 for HTTP. For HTTP the generic endpoint gets
//     /v1/traces appended to its path and the traces endpoint is used as
//     is. The scheme decides TLS: http is plain text, https is TLS. For
//     grpc a bare host:port is allowed, and then INSECURE=true means plain
//     text, as the specification says (the Go exporter's own env reading
//     differs slightly: it lets INSECURE override the scheme, and takes
//     localhost:4317 as TLS by default).
//   - HEADERS: key=value pairs, values percent-decoded; never logged.
//   - TIMEOUT (milliseconds, default 10000), COMPRESSION (gzip or none),
//     CERTIFICATE, CLIENT_CERTIFICATE and CLIENT_KEY (PEM files).
//
// Every one of these is passed as an explicit option, so the exporter's
// own reading of the process environment never overrides it; the one
// exception is gRPC without compression, left to the exporter's default.
func (e env) otlpExporter(ctx context.Context) (exporter, error) {
	proto, protoVar := e.otlp("PROTOCOL")
	proto = strings.ToLower(proto)
	switch proto {
	case protoGRPC, protoHTTPProtobuf, protoHTTPJSON:
	case "":
		proto = protoHTTPProtobuf
	default:
		e.ignore(protoVar, proto, "is not an OTLP protocol (grpc, http/protobuf, http/json)", protoHTTPProtobuf)
		proto = protoHTTPProtobuf
	}
	headers := e.otlpHeaders()
	timeout := e.otlpTimeout()
	gzip := e.otlpGzip()

	if proto == protoGRPC {
		target, plain := e.grpcTarget()
		creds := insecure.NewCredentials()
		scheme := "http://"
		if !plain {
			creds = credentials.NewTLS(e.otlpTLS())
			scheme = "https://"
		}
		opts := []otlptracegrpc.Option{
			otlptracegrpc.WithEndpoint(target),
			otlptracegrpc.WithTLSCredentials(creds),
			otlptracegrpc.WithHeaders(headers),
			otlptracegrpc.WithTimeout(timeout),
		}
		if gzip {
			// There is no way to ask for no compression that does not
			// complain to the global error handler, so "none" is the
			// exporter's default (and its own reading of the process
			// environment).
			opts = append(opts, otlptracegrpc.WithCompressor("gzip"))
		}
		exp, err := otlptracegrpc.New(ctx, opts...)
		if err != nil {
			return exporter{}, fmt.Errorf("telemetry: OTLP gRPC exporter for %s: %w", target, err)
		}
		return exporter{exp, "otlp (grpc) to " + scheme + target}, nil
	}

	u := e.httpEndpoint()
	compression := otlptracehttp.NoCompression
	if gzip {
		compression = otlptracehttp.GzipCompression
	}
	encoding := otlptracehttp.EncodingProtobuf
	if proto == protoHTTPJSON {
		encoding = otlptracehttp.EncodingJSON
	}
	opts := []otlptracehttp.Option{
		otlptracehttp.WithEndpointURL(u.String()), // plain text unless https
		otlptracehttp.WithEncoding(encoding),
		otlptracehttp.WithHeaders(headers),
		otlptracehttp.WithTimeout(timeout),
		otlptracehttp.WithCompression(compression),
	}
	if u.Scheme == "https" {
		opts = append(opts, otlptracehttp.WithTLSClientConfig(e.otlpTLS()))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return exporter{}, fmt.Errorf("telemetry: OTLP HTTP exporter for %s: %w", u.Redacted(), err)
	}
	return exporter{exp, "otlp (" + proto + ") to " + u.String()}, nil
}

// grpcTarget returns the gRPC target (host:port) and whether it is plain
// text.
func (e env) grpcTarget() (target string, plain bool) {
	const fallback = "http://localhost:4317"
	raw, name := e.otlp("ENDPOINT")
	if raw == "" {
		return "localhost:4317", true
	}
	if !strings.Contains(raw, "://") {
		insec, _ := e.otlp("INSECURE")
		return raw, strings.EqualFold(insec, "true")
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "":
		e.ignore(name, "", "is not a URL with a host (e.g. http://collector:4317)", fallback)
		return "localhost:4317", true
	case u.Scheme != "http" && u.Scheme != "https":
		e.ignore(name, "", "has a scheme other than http or https", fallback)
		return "localhost:4317", true
	}
	return u.Host, u.Scheme == "http"
}

// httpEndpoint returns the URL the HTTP exporter posts to, without
// userinfo, query or fragment.
func (e env) httpEndpoint() *url.URL {
	raw, name := e.otlp("ENDPOINT")
	generic := name != envOTLPTracesPrefix+"ENDPOINT"
	u := &url.URL{Scheme: "http", Host: "localhost:4318"}
	if raw != "" {
		p, err := url.Parse(raw)
		switch {
		case err != nil || p.Host == "":
			e.ignore(name, "", "is not a URL with a host (e.g. http://collector:4318)", "http://localhost:4318")
			generic = true
		case p.Scheme != "http" && p.Scheme != "https":
			e.ignore(name, "", "has a scheme other than http or https", "http://localhost:4318")
			generic = true
		default:
			u = &url.URL{Scheme: p.Scheme, Host: p.Host, Path: p.Path}
		}
	}
	switch {
	case generic:
		u.Path = path.Join("/", u.Path, "v1/traces")
	case u.Path == "":
		u.Path = "/"
	}
	return u
}

// otlpHeaders parses HEADERS: comma-separated key=value pairs, values
// percent-decoded. A bad pair is ignored with a warning naming its position
// and never its text, which may hold a credential.
func (e env) otlpHeaders() map[string]string {
	raw, name := e.otlp("HEADERS")
	headers := map[string]string{}
	if raw == "" {
		return headers
	}
	for i, pair := range strings.Split(raw, ",") {
		k, v, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok || !validHeaderName(k) {
			e.ignore(name, "", fmt.Sprintf("pair %d is not name=value with a valid header name", i+1), "the other headers")
			continue
		}
		dec, err := url.PathUnescape(v)
		if err != nil {
			e.ignore(name, "", fmt.Sprintf("the value of header %q is not percent-encoded correctly", k), "the other headers")
			continue
		}
		headers[k] = strings.TrimSpace(dec)
	}
	return headers
}

// validHeaderName reports whether s is an HTTP token (RFC 9110).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

func (e env) otlpTimeout() time.Duration {
	raw, name := e.otlp("TIMEOUT")
	if raw == "" {
		return defaultOTLPTimeout
	}
	ms, err := strconv.Atoi(raw)
	if err != nil || ms <= 0 {
		e.ignore(name, raw, "is not a positive number of milliseconds", "10000")
		return defaultOTLPTimeout
	}
	return time.Duration(ms) * time.Millisecond
}

func (e env) otlpGzip() bool {
	raw, name := e.otlp("COMPRESSION")
	switch strings.ToLower(raw) {
	case "", "none":
		return false
	case "gzip":
		return true
	}
	e.ignore(name, raw, "is not gzip or none", "none")
	return false
}

// otlpTLS returns the TLS configuration for an https endpoint: the system
// roots unless CERTIFICATE names a PEM file of roots, and the client
// certificate of CLIENT_CERTIFICATE and CLIENT_KEY if both are set. A file
// that cannot be used is ignored with a warning (the export then fails
// verification and says so, rather than being sent unverified).
func (e env) otlpTLS() *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if file, name := e.otlp("CERTIFICATE"); file != "" {
		pem, err := os.ReadFile(file)
		pool := x509.NewCertPool()
		if err == nil && !pool.AppendCertsFromPEM(pem) {
			err = errors.New("no PEM certificate in it")
		}
		if err != nil {
			e.ignore(name, file, "cannot be read as PEM certificates: "+err.Error(), "the system's roots")
		} else {
			c.RootCAs = pool
		}
	}
	certFile, certVar := e.otlp("CLIENT_CERTIFICATE")
	keyFile, keyVar := e.otlp("CLIENT_KEY")
	switch {
	case certFile != "" && keyFile != "":
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			e.ignore(certVar, certFile, "with "+keyVar+" is not a usable key pair: "+err.Error(), "no client certificate")
		} else {
			c.Certificates = []tls.Certificate{cert}
		}
	case certFile != "":
		e.ignore(certVar, certFile, "is set without OTEL_EXPORTER_OTLP_CLIENT_KEY", "no client certificate")
	case keyFile != "":
		e.ignore(keyVar, keyFile, "is set without OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "no client certificate")
	}
	return c
}
