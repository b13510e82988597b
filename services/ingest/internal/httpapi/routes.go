package httpapi

import (
	"fmt"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// jsonRoutes maps the path of every POST route with a JSON body to its request type. It is
// read from the google.api.http options of the services, the same rules the gateway is
// generated from, so the two cannot drift apart.
func jsonRoutes(services ...protoreflect.ServiceDescriptor) (map[string]protoreflect.MessageType, error) {
	routes := map[string]protoreflect.MessageType{}
	for _, sd := range services {
		methods := sd.Methods()
		for i := range methods.Len() {
			md := methods.Get(i)
			rule, _ := proto.GetExtension(md.Options(), annotations.E_Http).(*annotations.HttpRule)
			if rule.GetPost() == "" || rule.GetBody() != "*" {
				continue
			}
			mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
			if err != nil {
				return nil, fmt.Errorf("request type of %s: %w", md.FullName(), err)
			}
			routes[rule.GetPost()] = mt
		}
	}
	return routes, nil
}
