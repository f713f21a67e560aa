package redistransport

// ParseFrame exposes parseFrame to the fuzz target in package
// redistransport_test.
var ParseFrame = parseFrame
