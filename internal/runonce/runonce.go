// Package runonce holds the one definition of "Run called twice": every component (origin,
// tracker, peer node, player, observer) runs once; a second Run is a caller's bug.
package runonce

import (
	"errors"
	"sync/atomic"
)

// ErrRunTwice means Run was called on a component that already ran. Make a new one instead.
var ErrRunTwice = errors.New("run called twice: a component runs once; make a new one")

// Guard lets Run through once.
type Guard struct{ ran atomic.Bool }

// Start reports ErrRunTwice from the second call on.
func (g *Guard) Start() error {
	if g.ran.Swap(true) {
		return ErrRunTwice
	}
	return nil
}
