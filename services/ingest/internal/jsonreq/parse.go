package jsonreq

import (
	"encoding/json"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"

	"pushgo.dev/gateway/services/ingest/internal/apierr"
)

// MaxDepth is the deepest nesting of objects and arrays a body may have; the top-level object is
// depth 1. Deeper bodies are answered with invalid_json_data.
const MaxDepth = 64

// kind is the JSON type of a node.
type kind uint8

const (
	kindNull kind = iota
	kindBool
	kindNumber
	kindString
	kindArray
	kindObject
)

// node is one parsed JSON value. An object's kids are its members in document order, duplicate
// keys included (each kid carries its key), so that the decoder can report the first unknown or
// repeated key; an array's kids are its elements.
type node struct {
	kind    kind
	boolean bool
	// key is the member name when the node is a member of an object.
	key string
	// text is the unescaped value of a string or the literal text of a number.
	text string
	kids []node
}

// parser is a strict RFC 8259 parser: one value, optional surrounding whitespace, UTF-8 only
// (invalid UTF-8 and unpaired surrogate escapes are syntax errors), nesting capped at MaxDepth.
type parser struct {
	buf   []byte
	pos   int
	depth int
	// tooDeep is set when the nesting cap stopped the parse.
	tooDeep bool
	// stack collects the kids of the containers being parsed; each container copies its own
	// kids out into an exactly sized slice when it closes, so no per-container slice grows by
	// doubling.
	stack []node
}

// syntaxErr is a position-bearing parse failure; it never leaves the package.
type syntaxErr struct {
	off int
	msg string
}

// parse parses body into a tree. It returns invalid_json_syntax for malformed bodies (including
// empty ones and trailing data) and invalid_json_data for well-formed bodies nested too deeply.
func parse(body []byte) (node, *apierr.Error) {
	p := parser{buf: body}
	root, err := p.document()
	if err == nil {
		return root, nil
	}
	if p.tooDeep && json.Valid(body) {
		return node{}, apierr.Newf("invalid_json_data", "JSON nesting is deeper than %d levels", MaxDepth)
	}
	if p.tooDeep {
		// The cap stopped the scan early; the body is malformed somewhere, but we do not know where.
		return node{}, apierr.New("invalid_json_syntax", "invalid JSON syntax")
	}
	return node{}, apierr.Newf("invalid_json_syntax", "invalid JSON syntax at offset %d: %s", err.off, err.msg)
}

func (p *parser) fail(msg string) *syntaxErr { return &syntaxErr{off: p.pos, msg: msg} }

func (p *parser) failf(format string, args ...any) *syntaxErr {
	return &syntaxErr{off: p.pos, msg: fmt.Sprintf(format, args...)}
}

func (p *parser) document() (node, *syntaxErr) {
	p.skipSpace()
	if p.pos == len(p.buf) {
		return node{}, p.fail("empty body")
	}
	n, err := p.value()
	if err != nil {
		return node{}, err
	}
	p.skipSpace()
	if p.pos != len(p.buf) {
		return node{}, p.fail("trailing data after the top-level value")
	}
	return n, nil
}

func (p *parser) skipSpace() {
	for p.pos < len(p.buf) {
		switch p.buf[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// value parses one value starting at p.pos (whitespace already skipped). Nodes are returned by
// value so that they stay on the stack until copied into their parent.
func (p *parser) value() (node, *syntaxErr) {
	if p.pos >= len(p.buf) {
		return node{}, p.fail("unexpected end of input")
	}
	switch c := p.buf[p.pos]; {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		s, err := p.str()
		return node{kind: kindString, text: s}, err
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	case c == 't':
		return p.literal("true", node{kind: kindBool, boolean: true})
	case c == 'f':
		return p.literal("false", node{kind: kindBool})
	case c == 'n':
		return p.literal("null", node{kind: kindNull})
	default:
		return node{}, p.failf("unexpected character %q", rune(c))
	}
}

func (p *parser) literal(word string, v node) (node, *syntaxErr) {
	if len(p.buf)-p.pos < len(word) || string(p.buf[p.pos:p.pos+len(word)]) != word {
		return node{}, p.fail("invalid literal")
	}
	p.pos += len(word)
	return v, nil
}

func (p *parser) enter() *syntaxErr {
	p.depth++
	if p.depth > MaxDepth {
		p.tooDeep = true
		return p.fail("nesting too deep")
	}
	return nil
}

func (p *parser) object() (node, *syntaxErr) {
	if err := p.enter(); err != nil {
		return node{}, err
	}
	p.pos++ // '{'
	base := len(p.stack)
	p.skipSpace()
	if p.pos < len(p.buf) && p.buf[p.pos] == '}' {
		p.pos++
		p.depth--
		return node{kind: kindObject}, nil
	}
	for {
		if p.pos >= len(p.buf) || p.buf[p.pos] != '"' {
			return node{}, p.fail("expected a string key")
		}
		key, err := p.str()
		if err != nil {
			return node{}, err
		}
		p.skipSpace()
		if p.pos >= len(p.buf) || p.buf[p.pos] != ':' {
			return node{}, p.fail("expected ':' after an object key")
		}
		p.pos++
		p.skipSpace()
		kid, err := p.value()
		if err != nil {
			return node{}, err
		}
		kid.key = key
		p.stack = append(p.stack, kid)
		p.skipSpace()
		if p.pos >= len(p.buf) {
			return node{}, p.fail("unterminated object")
		}
		switch p.buf[p.pos] {
		case ',':
			p.pos++
			p.skipSpace()
		case '}':
			p.pos++
			p.depth--
			return node{kind: kindObject, kids: p.popKids(base)}, nil
		default:
			return node{}, p.fail("expected ',' or '}' in an object")
		}
	}
}

func (p *parser) array() (node, *syntaxErr) {
	if err := p.enter(); err != nil {
		return node{}, err
	}
	p.pos++ // '['
	base := len(p.stack)
	p.skipSpace()
	if p.pos < len(p.buf) && p.buf[p.pos] == ']' {
		p.pos++
		p.depth--
		return node{kind: kindArray}, nil
	}
	for {
		kid, err := p.value()
		if err != nil {
			return node{}, err
		}
		p.stack = append(p.stack, kid)
		p.skipSpace()
		if p.pos >= len(p.buf) {
			return node{}, p.fail("unterminated array")
		}
		switch p.buf[p.pos] {
		case ',':
			p.pos++
			p.skipSpace()
		case ']':
			p.pos++
			p.depth--
			return node{kind: kindArray, kids: p.popKids(base)}, nil
		default:
			return node{}, p.fail("expected ',' or ']' in an array")
		}
	}
}

// popKids moves the kids pushed since base into their own, exactly sized slice.
func (p *parser) popKids(base int) []node {
	kids := make([]node, len(p.stack)-base)
	copy(kids, p.stack[base:])
	clear(p.stack[base:])
	p.stack = p.stack[:base]
	return kids
}

// number scans -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? and keeps its text.
func (p *parser) number() (node, *syntaxErr) {
	start := p.pos
	if p.buf[p.pos] == '-' {
		p.pos++
	}
	switch {
	case p.pos < len(p.buf) && p.buf[p.pos] == '0':
		p.pos++
	case p.pos < len(p.buf) && p.buf[p.pos] >= '1' && p.buf[p.pos] <= '9':
		p.digits()
	default:
		return node{}, p.fail("invalid number")
	}
	if p.pos < len(p.buf) && p.buf[p.pos] == '.' {
		p.pos++
		if p.digits() == 0 {
			return node{}, p.fail("invalid number: no digits after '.'")
		}
	}
	if p.pos < len(p.buf) && (p.buf[p.pos] == 'e' || p.buf[p.pos] == 'E') {
		p.pos++
		if p.pos < len(p.buf) && (p.buf[p.pos] == '+' || p.buf[p.pos] == '-') {
			p.pos++
		}
		if p.digits() == 0 {
			return node{}, p.fail("invalid number: no digits in the exponent")
		}
	}
	return node{kind: kindNumber, text: string(p.buf[start:p.pos])}, nil
}

func (p *parser) digits() int {
	start := p.pos
	for p.pos < len(p.buf) && p.buf[p.pos] >= '0' && p.buf[p.pos] <= '9' {
		p.pos++
	}
	return p.pos - start
}

// str parses a string starting at the opening quote and returns its unescaped value.
func (p *parser) str() (string, *syntaxErr) {
	start := p.pos + 1
	i := start
	// Fast path: no escapes.
	for ; i < len(p.buf); i++ {
		c := p.buf[i]
		if c == '"' {
			raw := p.buf[start:i]
			if !utf8.Valid(raw) {
				return "", p.fail("invalid UTF-8 in a string")
			}
			p.pos = i + 1
			return string(raw), nil
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			p.pos = i
			return "", p.fail("control character in a string")
		}
	}
	out := make([]byte, 0, i-start+16)
	out = append(out, p.buf[start:i]...)
	for i < len(p.buf) {
		c := p.buf[i]
		switch {
		case c == '"':
			if !utf8.Valid(out) {
				return "", p.fail("invalid UTF-8 in a string")
			}
			p.pos = i + 1
			return string(out), nil
		case c < 0x20:
			p.pos = i
			return "", p.fail("control character in a string")
		case c != '\\':
			out = append(out, c)
			i++
			continue
		}
		// Escape sequence.
		if i+1 >= len(p.buf) {
			break
		}
		switch e := p.buf[i+1]; e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(p.buf, i+2)
			if !ok {
				p.pos = i
				return "", p.fail("invalid \\u escape")
			}
			i += 6
			if utf16.IsSurrogate(r) {
				r2, ok := rune(0), false
				if i+1 < len(p.buf) && p.buf[i] == '\\' && p.buf[i+1] == 'u' {
					r2, ok = hex4(p.buf, i+2)
				}
				r = utf16.DecodeRune(r, r2)
				if !ok || r == utf8.RuneError {
					p.pos = i
					return "", p.fail("unpaired surrogate in a \\u escape")
				}
				i += 6
			}
			out = utf8.AppendRune(out, r)
			continue
		default:
			p.pos = i
			return "", p.fail("invalid escape character")
		}
		i += 2
	}
	p.pos = len(p.buf)
	return "", p.fail("unterminated string")
}

// hex4 reads four hex digits at b[at:].
func hex4(b []byte, at int) (rune, bool) {
	if at+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[at : at+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
