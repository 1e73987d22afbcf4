// Package logx answers "how does the data plane say something": one logger
// on stderr whose lines start with `dataplane: ` (the Python edge and the
// tests read them), and IsClosed, the one test for "this listener or
// connection was closed on purpose".
package logx

import (
	"errors"
	"log"
	"net"
	"os"
)

var logger = log.New(os.Stderr, "", log.LstdFlags|log.Lmicroseconds)

// Printf logs one line, prefixed `dataplane: `.
func Printf(format string, args ...any) { logger.Printf("dataplane: "+format, args...) }

// IsClosed reports whether err means the listener or connection was closed.
func IsClosed(err error) bool { return errors.Is(err, net.ErrClosed) }
