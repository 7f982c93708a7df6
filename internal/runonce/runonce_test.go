package runonce

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestGuardLetsRunThroughOnce(t *testing.T) {
	var g Guard
	require.NoError(t, g.Start())
	require.ErrorIs(t, g.Start(), ErrRunTwice)
	require.ErrorIs(t, g.Start(), ErrRunTwice)
}
