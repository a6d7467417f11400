package bundle

import "fieldsync/agent/api"

// The requests and results of the bundle API are agent/api's (docs/api.md,
// "Bundles"); this package names them without the Bundle prefix.
type (
	WantRequest   = api.BundleWantRequest
	WantResult    = api.BundleWantResult
	ExportRequest = api.BundleExportRequest
	SpaceCount    = api.BundleSpaceCount
	ExportResult  = api.BundleExportResult
	ImportRequest = api.BundleImportRequest
	Skip          = api.BundleSkip
	ImportResult  = api.BundleImportResult
	Progress      = api.BundleProgress
)
