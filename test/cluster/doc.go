// Package cluster holds the cluster fault suite (`make test-cluster`): the deployment of
// deploy/compose.yaml — three NATS JetStream nodes, two replicas of each PushGo service — in
// containers started with testcontainers-go, a bounded load of event ops through both ingest
// replicas while nodes and services are killed, restarted and cut off, and then a check that
// nothing acknowledged was lost or applied or pushed twice. It needs the images of
// `make images` and a Docker engine, and runs only when PUSHGO_CLUSTER_SUITE=1.
package cluster
