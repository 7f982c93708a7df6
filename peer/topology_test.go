package peer

import (
	"reflect"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestTopologyEqualSeesEveryField: publishTopology skips a view equal to the last, so a field that
// equal ignores would leave Stats and the tracker stale whenever only it changed. Each field is
// changed in turn on a copy, and equal must tell.
func TestTopologyEqualSeesEveryField(t *testing.T) {
	base := topology{Depths: []int{1, 2}, ParentIDs: []string{"a", ""}, FreeSlots: 3, Neighbours: 4,
		Parents: 1, Children: 2, Links: LinkCounts{Direct: 1}, Dialled: LinkCounts{Direct: 1}}
	require.True(t, base.equal(&base))
	typ := reflect.TypeOf(base)
	for i := range typ.NumField() {
		changed := base
		changed.Depths = append([]int(nil), base.Depths...)
		changed.ParentIDs = append([]string(nil), base.ParentIDs...)
		f := reflect.ValueOf(&changed).Elem().Field(i)
		switch f.Kind() {
		case reflect.Int:
			f.SetInt(f.Int() + 1)
		case reflect.Bool:
			f.SetBool(!f.Bool())
		case reflect.Slice:
			f.Index(0).Set(reflect.ValueOf(changed).Field(i).Index(1))
		case reflect.Struct:
			g := f.Field(0)
			require.Equal(t, reflect.Int, g.Kind(), "field %s: teach this test its type", typ.Field(i).Name)
			g.SetInt(g.Int() + 1)
		default:
			t.Fatalf("field %s of kind %v: teach this test to change it", typ.Field(i).Name, f.Kind())
		}
		require.False(t, base.equal(&changed), "equal ignores topology.%s", typ.Field(i).Name)
	}
}
