package outbound

import (
	"testing"
	"time"
)

// timeFormat is the IMF-fixdate form of an HTTP-date.
const timeFormat = "Mon, 02 Jan 2006 15:04:05 GMT"

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	date := func(d time.Duration) string { return now.Add(d).Format(timeFormat) }
	tests := []struct {
		name   string
		values []string
		want   time.Duration
		ok     bool
	}{
		{"absent", nil, 0, false},
		{"seconds", []string{"120"}, 120 * time.Second, true},
		{"zero", []string{"0"}, 0, true},
		{"leading zeros", []string{"007"}, 7 * time.Second, true},
		{"whitespace", []string{" \t3 "}, 3 * time.Second, true},
		{"date in future", []string{date(90 * time.Second)}, 90 * time.Second, true},
		{"date with whitespace", []string{"  " + date(time.Minute) + " "}, time.Minute, true},
		{"RFC 850 date", []string{now.Add(30 * time.Second).Format(time.RFC850)}, 30 * time.Second, true},
		{"ANSI C date", []string{now.Add(10 * time.Second).Format(time.ANSIC)}, 10 * time.Second, true},
		{"past date is now", []string{date(-time.Hour)}, 0, true},
		{"far past date is now", []string{"Thu, 01 Jan 1970 00:00:00 GMT"}, 0, true},
		{"negative invalid", []string{"-5"}, 0, false},
		{"plus sign invalid", []string{"+5"}, 0, false},
		{"fraction invalid", []string{"1.5"}, 0, false},
		{"garbage invalid", []string{"soon"}, 0, false},
		{"empty invalid", []string{""}, 0, false},
		{"blank invalid", []string{"   "}, 0, false},
		{"digits with inner space invalid", []string{"1 2"}, 0, false},
		{"unit suffix invalid", []string{"10s"}, 0, false},
		{"huge number capped", []string{"99999999999999999999999999"}, maxDuration, true},
		{"max int64 seconds capped", []string{"9223372036854775807"}, maxDuration, true},
		{"just over duration range capped", []string{"9223372037"}, maxDuration, true},
		{"largest representable", []string{"9223372036"}, 9223372036 * time.Second, true},
		{"duplicate identical", []string{"5", "5"}, 5 * time.Second, true},
		{"duplicate identical after trim", []string{"5", " 5 "}, 5 * time.Second, true},
		{"duplicate differing ignored", []string{"5", "6"}, 0, false},
		{"duplicate date and seconds ignored", []string{"5", date(5 * time.Second)}, 0, false},
		{"comma list invalid", []string{"5, 6"}, 0, false},
	}
	for _, tt := range tests {
		got, ok := parseRetryAfter(tt.values, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("%s: parseRetryAfter(%q) = %v, %v; want %v, %v", tt.name, tt.values, got, ok, tt.want, tt.ok)
		}
	}
}
