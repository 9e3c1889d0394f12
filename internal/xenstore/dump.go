package xenstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
)

// Dump writes the tree below path (not path itself, like xenstore-ls -fp)
// as lines `path = "value"   (perms)`, children in the store's order.
// Nodes removed while it walks are skipped.
func (c *Conn) Dump(ctx context.Context, w io.Writer, path string) error {
	kids, err := c.Directory(ctx, path)
	if err != nil {
		return err
	}
	for _, k := range kids {
		p := path + "/" + k
		if path == "/" {
			p = "/" + k
		}
		v, err := c.Read(ctx, p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		ps, err := c.GetPerms(ctx, p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		perm := strings.ReplaceAll(ps.String(), " ", ",")
		if _, err := fmt.Fprintf(w, "%s = \"%s\"   (%s)\n", p, escapeValue(v), perm); err != nil {
			return err
		}
		if err := c.Dump(ctx, w, p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// escapeValue prints a value as xenstore-ls does: printable ASCII as is,
// anything else as an escape.
func escapeValue(v []byte) string {
	var b strings.Builder
	for _, c := range v {
		switch {
		case c == '\\':
			b.WriteString(`\\`)
		case c == '"':
			b.WriteString(`\"`)
		case c >= 0x20 && c < 0x7f:
			b.WriteByte(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\t':
			b.WriteString(`\t`)
		default:
			fmt.Fprintf(&b, `\x%02x`, c)
		}
	}
	return b.String()
}
