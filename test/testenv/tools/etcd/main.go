// Command etcd is etcd's server built from its Go module, for the test
// environment only (no release binaries can be downloaded here).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
