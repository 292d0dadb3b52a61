package policy

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// Sizes in the file are written as a number of bytes (4194304) or as a
// string of digits and a binary unit: "512B", "64KiB", "4MiB", "1GiB"
// (powers of 1024; one space before the unit is allowed). The decimal units
// KB, MB and GB are refused rather than guessed at: "4MB" reads as 4,000,000
// bytes to some and 4 MiB to others.

var sizeUnits = []struct {
	unit string
	mult int64
}{
	{"GiB", 1 << 30},
	{"MiB", 1 << 20},
	{"KiB", 1 << 10},
	{"B", 1}, // last: every unit above ends in "B"
}

// parseSize parses a size with a unit; msg says what is wrong, "" when the
// size is good.
func parseSize(s string) (v byteSize, msg string) {
	up := strings.ToUpper(s)
	for _, dec := range []string{"KB", "MB", "GB", "TB"} {
		if strings.HasSuffix(up, dec) {
			return 0, "uses a decimal unit, which is ambiguous"
		}
	}
	num, mult := s, int64(0)
	for _, u := range sizeUnits {
		if rest, ok := strings.CutSuffix(s, u.unit); ok {
			num, mult = rest, u.mult
			break
		}
	}
	if mult == 0 {
		return 0, "has no unit or an unknown one"
	}
	num = strings.TrimSuffix(num, " ")
	if strings.HasPrefix(num, "-") {
		return 0, "is negative"
	}
	if num == "" || strings.Trim(num, "0123456789") != "" {
		return 0, "is not a whole number with a unit"
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, "is too large"
	}
	return byteSize(n * mult), ""
}

// formatSize writes n with the largest binary unit that divides it.
func formatSize(n int64) string {
	for _, u := range sizeUnits {
		if n != 0 && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.unit
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// formatDuration writes d the way a policy file would: whole hours as "24h",
// whole minutes as "5m", whole seconds as "90s", whole milliseconds as
// "250ms", anything else as time.Duration does.
func formatDuration(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	case d%time.Millisecond == 0:
		return strconv.FormatInt(int64(d/time.Millisecond), 10) + "ms"
	}
	return d.String()
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func formatInt(i int64) string { return strconv.FormatInt(i, 10) }
