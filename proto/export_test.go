package proto

// Fields returns a copy of c without the frame buffer it holds, for comparing a decoded chunk
// with a literal field by field.
func (c *Chunk) Fields() Chunk {
	d := *c
	d.frame = nil
	return d
}
