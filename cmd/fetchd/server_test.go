package main

import (
	"bytes"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestNoFlowControlProbe speaks HTTP/2 to a real fetchd and sends one call
// (a health check: its message still passes through flow control). The
// listener must announce its fixed windows (the call's in SETTINGS, the
// connection's as a WINDOW_UPDATE of stream 0) and must not answer the
// call's message with a bandwidth probe: with grpc-go's dynamic windows,
// the first message on a connection always draws a WINDOW_UPDATE and a
// PING, and every later one whose predecessor's probe has been answered,
// which at one call in flight is every call.
func TestNoFlowControlProbe(t *testing.T) {
	t.Parallel()
	m, _ := startWith(t, true, nil)
	conn, err := net.Dial("tcp", m.GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}

	var hdr bytes.Buffer
	enc := hpack.NewEncoder(&hdr)
	for _, f := range [][2]string{
		{":method", "POST"}, {":scheme", "http"}, {":authority", m.GRPCAddr()},
		{":path", "/grpc.health.v1.Health/Check"},
		{"content-type", "application/grpc"}, {"te", "trailers"},
	} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hdr.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	// An empty HealthCheckRequest: uncompressed, length 0.
	if err := fr.WriteData(1, true, []byte{0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}

	var window, connCredit uint32
	var announced, answered bool
	for !answered {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the answer: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				continue
			}
			window, announced = f.Value(http2.SettingInitialWindowSize)
			if err := fr.WriteSettingsAck(); err != nil {
				t.Fatal(err)
			}
		case *http2.WindowUpdateFrame:
			if f.StreamID == 0 {
				connCredit += f.Increment
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				t.Errorf("fetchd sent a PING %x with the call's answer: its flow-control windows are dynamic", f.Data)
			}
		case *http2.HeadersFrame:
			answered = f.StreamID == 1 && f.StreamEnded()
		}
	}
	if !announced || window != streamWindow {
		t.Errorf("SETTINGS_INITIAL_WINDOW_SIZE = %d (announced %v), want %d", window, announced, streamWindow)
	}
	// HTTP/2 starts every window at 65,535 bytes.
	if want := uint32(connWindow - 65535); connCredit != want {
		t.Errorf("connection window raised by %d, want %d (to %d)", connCredit, want, connWindow)
	}
}
