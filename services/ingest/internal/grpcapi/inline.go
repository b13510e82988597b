package grpcapi

import (
	"context"
	"reflect"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Inline is an in-process grpc.ClientConnInterface: a call runs the registered service's
// handler through the server interceptor, with no network hop and no serialisation. The REST
// gateway uses it, so REST requests see exactly what gRPC callers see. Only unary methods are
// supported. Register every service before the first call; Inline is then safe for concurrent
// use.
type Inline struct {
	interceptor grpc.UnaryServerInterceptor
	methods     map[string]inlineMethod
}

type inlineMethod struct {
	srv     any
	handler grpc.MethodHandler
}

// NewInline returns a connection that runs calls through interceptor.
func NewInline(interceptor grpc.UnaryServerInterceptor) *Inline {
	return &Inline{interceptor: interceptor, methods: map[string]inlineMethod{}}
}

// RegisterService implements grpc.ServiceRegistrar, so generated Register functions accept it.
func (c *Inline) RegisterService(desc *grpc.ServiceDesc, impl any) {
	for _, m := range desc.Methods {
		c.methods["/"+desc.ServiceName+"/"+m.MethodName] = inlineMethod{srv: impl, handler: m.Handler}
	}
}

// Invoke runs a unary method. Outgoing metadata (the gateway's copy of the HTTP headers)
// becomes the handler's incoming metadata.
func (c *Inline) Invoke(ctx context.Context, method string, args, reply any, _ ...grpc.CallOption) error {
	m, ok := c.methods[method]
	if !ok {
		return status.Errorf(codes.Unimplemented, "unknown method %s", method)
	}
	md, _ := metadata.FromOutgoingContext(ctx)
	ctx = metadata.NewIncomingContext(ctx, md)
	dec := func(in any) error { return move(in, args) }
	resp, err := m.handler(m.srv, ctx, dec, c.interceptor)
	if err != nil {
		return err
	}
	return move(reply, resp)
}

// move makes dst (a pointer to a freshly allocated message) hold src's contents. Neither
// side of an in-process call uses its copy again (the gateway's request and the handler's
// response are dropped after the call), so a shallow copy is enough where proto.Merge would
// deep-copy every field, Structs included.
func move(dst, src any) error {
	d, s := reflect.ValueOf(dst), reflect.ValueOf(src)
	if d.Kind() != reflect.Pointer || d.IsNil() || s.Type() != d.Type() {
		return status.Errorf(codes.Internal, "in-process call: cannot move %T into %T", src, dst)
	}
	if s.IsNil() {
		return nil
	}
	d.Elem().Set(s.Elem())
	return nil
}

// NewStream is not supported: the API has no streaming methods.
func (c *Inline) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, status.Error(codes.Unimplemented, "streaming is not supported in process")
}
