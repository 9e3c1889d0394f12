package agent

import (
	"strconv"
	"time"
)

// Millis is a duration as every JSON output, status file and audit record
// spells one: a number of milliseconds, under a key ending in _ms.
type Millis time.Duration

// MarshalJSON writes the milliseconds, with a fraction when there is one.
func (m Millis) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, float64(m)/float64(time.Millisecond), 'f', -1, 64), nil
}

// UnmarshalJSON reads what MarshalJSON writes.
func (m *Millis) UnmarshalJSON(b []byte) error {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return err
	}
	*m = Millis(f * float64(time.Millisecond))
	return nil
}
