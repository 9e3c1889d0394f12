package policygen

import (
	"errors"
	"fmt"
)

// The xl.cfg format, as xl's own reader takes it: `name = value` settings,
// one a line or separated by ";"; a value is a string in double or single
// quotes (with C escapes), a number, or a list in [ ] of values separated
// by commas, which may span lines and end in a comma; "#" starts a
// comment; `name += value` appends to a list. The last setting of a name
// is the one xl uses.

// ErrXLConfig is wrapped by every error of the xl.cfg reader.
var ErrXLConfig = errors.New("xl.cfg syntax")

// Limits that keep a hostile file from costing much.
const (
	MaxXLConfigSize  = 1 << 20
	MaxXLConfigDepth = 8
)

// An XLError is a syntax error at a line of an xl.cfg file.
type XLError struct {
	File string
	Line int
	Msg  string
}

func (e *XLError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }
func (e *XLError) Unwrap() error { return ErrXLConfig }

// An XLValue is a value of a setting: an atom, or a list of values.
type XLValue struct {
	Line   int
	Atom   string // the string, or the number as written
	Number bool   // Atom was written as a number
	IsList bool
	List   []XLValue
}

// An XLSetting is one `name = value`.
type XLSetting struct {
	Name  string
	Line  int
	Value XLValue
}

// An XLConfig is an xl.cfg file's settings, in file order.
type XLConfig struct {
	File     string
	Settings []XLSetting
}

// Get returns the setting xl uses for name: the last one.
func (c *XLConfig) Get(name string) (XLSetting, bool) {
	for i := len(c.Settings) - 1; i >= 0; i-- {
		if c.Settings[i].Name == name {
			return c.Settings[i], true
		}
	}
	return XLSetting{}, false
}

// ParseXLConfig reads an xl.cfg file; file names it in errors.
func ParseXLConfig(file string, data []byte) (*XLConfig, error) {
	if len(data) > MaxXLConfigSize {
		return nil, &XLError{file, 1, fmt.Sprintf("%d bytes: an xl.cfg file is at most %d", len(data), MaxXLConfigSize)}
	}
	p := &xlParser{lx: xlLexer{file: file, src: string(data), line: 1}}
	c := &XLConfig{File: file}
	for {
		t, err := p.next()
		if err != nil {
			return nil, err
		}
		switch t.kind {
		case tEOF:
			return c, nil
		case tNewline, tSemi:
			continue
		case tIdent:
		default:
			return nil, p.lx.errAt(t.line, "expected a setting name, found %s", t)
		}
		s, err := p.setting(t)
		if err != nil {
			return nil, err
		}
		if s.append {
			if err := appendSetting(c, s.XLSetting); err != nil {
				return nil, p.lx.errAt(s.Line, "%v", err)
			}
			continue
		}
		c.Settings = append(c.Settings, s.XLSetting)
	}
}

func appendSetting(c *XLConfig, s XLSetting) error {
	prev, ok := c.Get(s.Name)
	if !ok {
		c.Settings = append(c.Settings, s)
		return nil
	}
	if !prev.Value.IsList || !s.Value.IsList {
		return fmt.Errorf("%s += appends a list to a list", s.Name)
	}
	for i := len(c.Settings) - 1; i >= 0; i-- {
		if c.Settings[i].Name == s.Name {
			c.Settings[i].Value.List = append(c.Settings[i].Value.List, s.Value.List...)
			return nil
		}
	}
	return nil
}

type xlParser struct {
	lx   xlLexer
	peek *xlToken
}

func (p *xlParser) next() (xlToken, error) {
	if p.peek != nil {
		t := *p.peek
		p.peek = nil
		return t, nil
	}
	return p.lx.token()
}

// nextSkipNL is next, past newlines: inside a list they mean nothing.
func (p *xlParser) nextSkipNL() (xlToken, error) {
	for {
		t, err := p.next()
		if err != nil || t.kind != tNewline {
			return t, err
		}
	}
}

type parsedSetting struct {
	XLSetting
	append bool
}

func (p *xlParser) setting(name xlToken) (parsedSetting, error) {
	s := parsedSetting{XLSetting: XLSetting{Name: name.text, Line: name.line}}
	op, err := p.next()
	if err != nil {
		return s, err
	}
	switch op.kind {
	case tEq:
	case tPlusEq:
		s.append = true
	default:
		return s, p.lx.errAt(op.line, "expected = after %s, found %s", name.text, op)
	}
	t, err := p.next()
	if err != nil {
		return s, err
	}
	if s.Value, err = p.value(t, 0); err != nil {
		return s, err
	}
	end, err := p.next()
	if err != nil {
		return s, err
	}
	if end.kind != tNewline && end.kind != tSemi && end.kind != tEOF {
		return s, p.lx.errAt(end.line, "expected the end of the line after the value of %s, found %s", name.text, end)
	}
	return s, nil
}

func (p *xlParser) value(t xlToken, depth int) (XLValue, error) {
	switch t.kind {
	case tString:
		return XLValue{Line: t.line, Atom: t.text}, nil
	case tNumber:
		return XLValue{Line: t.line, Atom: t.text, Number: true}, nil
	case tOpen:
		if depth >= MaxXLConfigDepth {
			return XLValue{}, p.lx.errAt(t.line, "lists nest more than %d deep", MaxXLConfigDepth)
		}
		return p.list(t, depth)
	}
	return XLValue{}, p.lx.errAt(t.line, "expected a value (a string in quotes, a number or a [list]), found %s", t)
}

func (p *xlParser) list(open xlToken, depth int) (XLValue, error) {
	v := XLValue{Line: open.line, IsList: true, List: []XLValue{}}
	for {
		t, err := p.nextSkipNL()
		if err != nil {
			return v, err
		}
		if t.kind == tClose {
			return v, nil
		}
		item, err := p.value(t, depth+1)
		if err != nil {
			return v, err
		}
		v.List = append(v.List, item)
		sep, err := p.nextSkipNL()
		if err != nil {
			return v, err
		}
		switch sep.kind {
		case tComma:
		case tClose:
			return v, nil
		default:
			return v, p.lx.errAt(sep.line, "expected , or ] in the list opened at line %d, found %s", open.line, sep)
		}
	}
}
