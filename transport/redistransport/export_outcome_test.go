package redistransport

// WaitPublishes waits until no goroutine of tr sends a publish any more, so
// that a test can count the log knowing no call is still on its way. Later
// publishes of tr fail (as after Close).
func WaitPublishes(tr *Transport) { tr.waitPublishes() }
