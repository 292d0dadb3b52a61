package baregateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	fetchdv1 "github.com/fetchd/fetchd/gen/fetchd/v1"
)

func TestGatewayForwards(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Seen", r.Method+" "+r.Header.Get("X-Ask")+" "+string(body))
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte("made"))
	}))
	defer up.Close()
	g := &Gateway{Client: up.Client()}
	resp, err := g.Fetch(t.Context(), &fetchdv1.FetchRequest{
		Url: up.URL, Method: "POST", Body: []byte("x=1"),
		Headers: []*fetchdv1.Header{{Name: "X-Ask", Value: "yes"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	seen := ""
	for _, h := range resp.GetHeaders() {
		if h.GetName() == "X-Seen" {
			seen = h.GetValue()
		}
	}
	if resp.GetStatus() != 201 || string(resp.GetBody()) != "made" || seen != "POST yes x=1" {
		t.Fatalf("resp = %v", resp)
	}

	if _, err := g.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: "http://[::1"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad URL: %v", err)
	}
	up.Close()
	if _, err := g.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL}); status.Code(err) != codes.Unavailable {
		t.Errorf("closed upstream: %v", err)
	}
}
