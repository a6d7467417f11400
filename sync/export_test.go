package sync

// SetSendTamper lets the external tests play a hostile peer that sends
// other bytes, or another offset, than the resumable envelope it announces
// (resume.go).
func SetSendTamper(e *Engine, f func(env Envelope, offset uint32, data []byte) (uint32, []byte)) {
	e.sendTamper = f
}
