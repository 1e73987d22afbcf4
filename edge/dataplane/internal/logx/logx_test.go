package logx

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"testing"
)

func TestIsClosed(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"net.ErrClosed", net.ErrClosed, true},
		{"wrapped", fmt.Errorf("accept: %w", net.ErrClosed), true},
		{"EOF", io.EOF, false},
		{"other", errors.New("connection reset"), false},
		{"nil", nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := IsClosed(c.err); got != c.want {
				t.Fatalf("IsClosed(%v) = %v, want %v", c.err, got, c.want)
			}
		})
	}
}

func TestIsClosedOnAClosedListener(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if _, err := l.Accept(); !IsClosed(err) {
		t.Fatalf("Accept on a closed listener: %v, IsClosed false", err)
	}
}

func TestPrintfPrefix(t *testing.T) {
	var buf bytes.Buffer
	logger.SetOutput(&buf)
	defer logger.SetOutput(os.Stderr)
	Printf("forward up: local_port=%d", 10000)
	if got := buf.String(); !regexp.MustCompile(`^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d{6} dataplane: forward up: local_port=10000\n$`).MatchString(got) {
		t.Fatalf("logged %q", got)
	}
}
