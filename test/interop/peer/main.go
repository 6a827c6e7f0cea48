// nsm-interop-peer plays upstream Network Service Mesh components (sdk v1.18.0 behaviour) against nsm-ts, for
// the conformance tests in test/interop. It is our own code written after upstream's behaviour; nothing of
// networkservicemesh or grpcfd is linked in. Results go to stdout as one JSON object per line, logs to stderr.
//
//	nsm-interop-peer endpoint --listen-on unix:///path --name NAME --service SVC [--register-to URL] ...
//	nsm-interop-peer client --connect-to URL --service SVC [--hold 10s] ...
//	nsm-interop-peer nsmgr --listen-on unix:///path --endpoint URL ...
//	nsm-interop-peer registry-suite --registry URL ...
//
// Every subcommand takes --cert-file --key-file --ca-file (an X.509-SVID and its trust bundle).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: nsm-interop-peer endpoint|client|nsmgr|registry-suite [flags] (-h for each)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var code int
	switch os.Args[1] {
	case "endpoint":
		code = runEndpoint(ctx, os.Args[2:])
	case "client":
		code = runClient(ctx, os.Args[2:])
	case "nsmgr":
		code = runNsmgr(ctx, os.Args[2:])
	case "registry-suite":
		code = runRegistrySuite(ctx, os.Args[2:])
	default:
		fmt.Fprintf(os.Stderr, "unknown subcommand %q\n", os.Args[1])
		code = 2
	}
	os.Exit(code)
}
