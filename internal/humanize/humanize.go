// Package humanize formats quantities for people reading a terminal or a report.
package humanize

import "fmt"

// Bytes formats n with a binary unit: "512 B", "1.5 KiB", "7.2 MiB", "1.33 GiB".
func Bytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
