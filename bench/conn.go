package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// conn is one keep-alive HTTP/1.1 connection, used by one load worker. Requests are written by
// hand and answers read with net/http's own response parser: the load generator shares the
// machine's cores with the server, and http.Client costs several times as much per request
// (two goroutines per connection that every request passes through, per-request contexts and
// headers). Nothing is retried, so every request the server answered is counted exactly once.
type conn struct {
	host string // host:port
	c    net.Conn
	r    *bufio.Reader
	req  []byte
	body []byte
	// retryAfter is the Retry-After header of the last answer ("" when none).
	retryAfter string
}

func newConn(base string) *conn {
	return &conn{host: strings.TrimPrefix(base, "http://")}
}

// post sends one JSON request and returns the status and the answer's body, which stays valid
// until the next call.
func (c *conn) post(path string, body []byte) (int, []byte, error) {
	if c.c == nil {
		nc, err := net.DialTimeout("tcp", c.host, 5*time.Second)
		if err != nil {
			return 0, nil, err
		}
		c.c, c.r = nc, bufio.NewReaderSize(nc, 16<<10)
	}
	c.req = append(c.req[:0], "POST "...)
	c.req = append(c.req, path...)
	c.req = append(c.req, " HTTP/1.1\r\nHost: "...)
	c.req = append(c.req, c.host...)
	c.req = append(c.req, "\r\nContent-Type: application/json\r\nContent-Length: "...)
	c.req = strconv.AppendInt(c.req, int64(len(body)), 10)
	c.req = append(c.req, "\r\n\r\n"...)
	c.req = append(c.req, body...)
	if err := c.c.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return 0, nil, c.fail(err)
	}
	if _, err := c.c.Write(c.req); err != nil {
		return 0, nil, c.fail(err)
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return 0, nil, c.fail(err)
	}
	c.retryAfter = resp.Header.Get("Retry-After")
	buf := bytes.NewBuffer(c.body[:0])
	_, err = io.Copy(buf, resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return 0, nil, c.fail(err)
	}
	c.body = buf.Bytes()
	if resp.Close {
		_ = c.fail(errors.New("server closed the connection"))
	}
	return resp.StatusCode, c.body, nil
}

// fail drops the connection; the next post dials a new one.
func (c *conn) fail(err error) error {
	c.close()
	return fmt.Errorf("post: %w", err)
}

func (c *conn) close() {
	if c.c != nil {
		_ = c.c.Close()
		c.c = nil
	}
}
