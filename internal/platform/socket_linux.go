package platform

// MaxSocketPath is the longest Unix socket path the kernel accepts
// (sizeof(sun_path) - 1 for the terminating NUL).
const MaxSocketPath = 107
