package jsonreq

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"unicode/utf8"
)

// toAny converts a parsed tree to what encoding/json produces with UseNumber (objects keep the
// last duplicate).
func toAny(n *node) any {
	switch n.kind {
	case kindBool:
		return n.boolean
	case kindNumber:
		return json.Number(n.text)
	case kindString:
		return n.text
	case kindArray:
		out := make([]any, len(n.kids))
		for i := range n.kids {
			out[i] = toAny(&n.kids[i])
		}
		return out
	case kindObject:
		out := make(map[string]any, len(n.kids))
		for i := range n.kids {
			out[n.kids[i].key] = toAny(&n.kids[i])
		}
		return out
	default:
		return nil
	}
}

// checkAgainstEncodingJSON is the differential oracle of the parser: whatever it accepts,
// encoding/json accepts and decodes to the same tree; whatever encoding/json accepts, it accepts
// too, unless the input holds invalid UTF-8 or \u escapes (which may be lone surrogates, rejected
// here on purpose) or is nested too deeply (then the code is invalid_json_data).
func checkAgainstEncodingJSON(t *testing.T, b []byte) {
	t.Helper()
	root, err := parse(b)
	valid := json.Valid(b)
	if err == nil {
		if !valid {
			t.Fatalf("parse accepted %q, which encoding/json rejects", b)
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var want any
		if derr := dec.Decode(&want); derr != nil {
			t.Fatalf("encoding/json decode %q: %v", b, derr)
		}
		if got := toAny(&root); !reflect.DeepEqual(got, want) {
			t.Fatalf("parse(%q) = %#v, encoding/json = %#v", b, got, want)
		}
		return
	}
	switch err.Code {
	case "invalid_json_data":
		if !valid {
			t.Fatalf("parse(%q) = %v for a body encoding/json rejects; want invalid_json_syntax", b, err)
		}
	case "invalid_json_syntax":
		if valid && utf8.Valid(b) && !bytes.Contains(b, []byte(`\u`)) {
			t.Fatalf("parse rejected %q, which encoding/json accepts: %v", b, err)
		}
	default:
		t.Fatalf("parse(%q) = unexpected code %v", b, err)
	}
}

var parseSeeds = []string{
	``, ` `, `{}`, `[]`, `null`, `true`, `false`, `0`, `-0`, `-0.0e+00`, `1E9`, `12.5e-3`,
	`"a"`, `"\u00e9\ud83d\ude00"`, `"\ud800"`, `"\udc00\ud800"`, `"\/\b\f\n\r\t\"\\"`,
	`{"a":[1,{"b":null}],"a":2}`, `[1,2,]`, `{"a" 1}`, `{"a":1,}`, `01`, `1.`, `.5`, `-`, `+1`,
	`1e`, `"abc`, "\"a\tb\"", "\"\xff\"", "\xef\xbb\xbf{}", `{} `, ` {}{}`, `[[[[[[]]]]]]`, `nul`,
	`{"a":"\u0000"}`, `"\uD83D\uDE00"`, `"\uZZZZ"`, `[1 2]`, `{"":""}`,
}

func TestParseAgainstEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, s := range parseSeeds {
		checkAgainstEncodingJSON(t, []byte(s))
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range parseSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkAgainstEncodingJSON)
}
