package grpcapi

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"pushgo.dev/gateway/services/ingest/internal/auth"
	"pushgo.dev/gateway/services/ingest/internal/clientaddr"
)

func TestInterceptorSetsTheClientAddress(t *testing.T) {
	t.Parallel()
	trusted, err := clientaddr.ParsePrefixes("10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	icpt := Interceptor(auth.NewToken(""), clientaddr.New(trusted, nil), slog.New(slog.DiscardHandler))
	withPeer := func(ip string, xff ...string) context.Context {
		ctx := peer.NewContext(t.Context(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 4000}})
		if len(xff) > 0 {
			ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("x-forwarded-for", xff[0]))
		}
		return ctx
	}
	tests := []struct {
		name string
		ctx  context.Context
		want string
	}{
		{"gRPC peer", withPeer("203.0.113.4"), "203.0.113.4"},
		{"untrusted peer's metadata ignored", withPeer("203.0.113.4", "198.51.100.1"), "203.0.113.4"},
		{"trusted proxy's metadata", withPeer("10.1.1.1", "1.2.3.4, 198.51.100.1"), "198.51.100.1"},
		{"resolved by HTTP: kept", clientaddr.NewContext(withPeer("10.1.1.1", "198.51.100.1"), clientaddr.Addr{IP: netip.MustParseAddr("192.0.2.8")}), "192.0.2.8"},
		{"no peer: unknown", t.Context(), "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got string
			_, err := icpt(tt.ctx, nil, &grpc.UnaryServerInfo{FullMethod: "/x/Y"}, func(ctx context.Context, _ any) (any, error) {
				a, ok := clientaddr.FromContext(ctx)
				if !ok {
					t.Error("no address in the handler's context")
				}
				got = a.Key()
				return nil, nil
			})
			if err != nil || got != tt.want {
				t.Fatalf("got %q (%v), want %q", got, err, tt.want)
			}
		})
	}
}
