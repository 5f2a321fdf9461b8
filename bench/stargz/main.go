// A minimal containerd-stargz-grpc: the stargz snapshotter service on a gRPC unix socket.
package main

import (
	"context"
	"flag"
	"net"
	"os"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/contrib/snapshotservice"
	"github.com/containerd/stargz-snapshotter/service"
	"github.com/containerd/stargz-snapshotter/service/resolver"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
)

func main() {
	address := flag.String("address", "/run/containerd-stargz-grpc/containerd-stargz-grpc.sock", "socket")
	root := flag.String("root", "/var/lib/containerd-stargz-grpc", "root")
	level := flag.String("log-level", "info", "log level")
	plain := flag.String("plain-http-host", "", "registry host:port reached over plain HTTP")
	flag.Parse()
	if l, err := logrus.ParseLevel(*level); err == nil {
		logrus.SetLevel(l)
	}
	ctx := context.Background()
	cfg := &service.Config{}
	if *plain != "" {
		cfg.ResolverConfig = service.ResolverConfig{Host: map[string]resolver.HostConfig{*plain: {Mirrors: []resolver.MirrorConfig{{Host: *plain, Insecure: true}}}}}
	}
	rs, err := service.NewStargzSnapshotterService(ctx, *root, cfg)
	if err != nil {
		logrus.WithError(err).Fatal("snapshotter")
	}
	rpc := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(rpc, snapshotservice.FromSnapshotter(rs))
	os.Remove(*address)
	l, err := net.Listen("unix", *address)
	if err != nil {
		logrus.WithError(err).Fatal("listen")
	}
	if err := rpc.Serve(l); err != nil {
		logrus.WithError(err).Fatal("serve")
	}
}
