package tracker

import (
	"reflect"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
)

// Changing any field of a peer record but its playback report changes its fingerprint; a field
// added to PeerState or PeerRecord that fingerprint does not hash fails here.
func TestFingerprintCoversEveryFieldButQuality(t *testing.T) {
	base := proto.PeerRecord{
		PeerState: proto.PeerState{
			PeerID: "p", Stream: "s", StreamKey: "k", Addr: "10.0.0.1:1", UploadBps: 5,
			Depths: []int{1, 2}, Parents: []string{"a", ""}, FreeSlots: 1,
			Quality:       proto.PeerQuality{BufferMs: 1, Stalls: 1, FallbackShare: 0.5},
			ReflexiveAddr: "10.0.0.1:2", NATKind: proto.NATCone,
		},
		SourceIP: "10.0.0.1",
	}
	fp := fingerprint(base)
	require.NotZero(t, fp)
	var walk func(v reflect.Value, path string)
	changed := 0
	walk = func(v reflect.Value, path string) {
		for i := range v.NumField() {
			f, sf := v.Field(i), v.Type().Field(i)
			name := path + sf.Name
			if sf.Type == reflect.TypeFor[proto.PeerQuality]() {
				continue
			}
			if sf.Anonymous {
				walk(f, name+".")
				continue
			}
			old := reflect.ValueOf(f.Interface())
			switch f.Kind() {
			case reflect.String:
				f.SetString(f.String() + "x")
			case reflect.Int, reflect.Int64:
				f.SetInt(f.Int() + 1)
			case reflect.Uint8:
				f.SetUint(f.Uint() + 1)
			case reflect.Slice:
				f.Set(reflect.Append(f, reflect.Zero(f.Type().Elem())))
			default:
				t.Fatalf("field %s of kind %s: teach fingerprint (and this test) about it", name, f.Kind())
			}
			require.NotEqual(t, fp, fingerprint(base), "changing %s leaves the fingerprint", name)
			changed++
			f.Set(old)
			require.Equal(t, fp, fingerprint(base), "restoring %s", name)
		}
	}
	walk(reflect.ValueOf(&base).Elem(), "")
	// Every field of PeerState but Quality, and SourceIP.
	require.Equal(t, reflect.TypeFor[proto.PeerState]().NumField()-1+1, changed)

	// Swapping neighbouring strings moves no bytes between fields unnoticed.
	a, b := base, base
	a.Stream, a.StreamKey = "ab", "c"
	b.Stream, b.StreamKey = "a", "bc"
	require.NotEqual(t, fingerprint(a), fingerprint(b))

	q := base
	q.Quality = proto.PeerQuality{BufferMs: 9999, Stalls: 7, FallbackShare: 1}
	require.Equal(t, fp, fingerprint(q), "the playback report is left out")
}
