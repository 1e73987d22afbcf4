package front

// Bounds are the fronts' visitor limits (main's flags; edge/README.md lists them).
type Bounds struct {
	VisitorShare float64 // of connections-per-account one visitor may hold
}
