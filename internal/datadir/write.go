package datadir

import (
	"os"
	"path/filepath"
)

// WriteFile replaces path with data, atomically: it writes a temporary file
// in the same directory, fsyncs it, renames it over path and fsyncs the
// directory, so a crash leaves the old file or the new one, never a torn
// one, and no temporary file behind once it returns. Every file of a data
// directory that is ever replaced is written through it.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // gone once renamed
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	syncDir(dir)
	return nil
}

// syncDir makes a rename in dir durable where the system allows it (on
// Windows a directory cannot be synced: the rename is left to NTFS's
// journal). A failure loses nothing: the new file is already in place.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
