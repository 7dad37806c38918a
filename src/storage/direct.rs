//! Large files written around the page cache.
//!
//! A buffered write first copies every byte into the kernel's page cache, and on this
//! kind of machine that copy (fresh pages, charged to the process's memory cgroup) costs
//! more CPU than producing the bytes: writing a 10M-record identity state (240 MB) took
//! 0.8–1.4 s, most of it in the kernel's copy. [`DirectFile`] writes whole aligned blocks
//! with `O_DIRECT` from one reused buffer, so the disk reads them from that buffer, and
//! trims the padding of the last block with `set_len`. Where the file system refuses
//! `O_DIRECT` (tmpfs on older kernels, some network file systems), it writes the same
//! bytes through the page cache instead. Either way [`DirectFile::finish`] fsyncs.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The alignment `O_DIRECT` asks of buffers, offsets and lengths (a page covers every
/// logical block size in use).
const ALIGN: usize = 4096;
/// Bytes written per call.
const BLOCK: usize = 4 << 20;

/// A new file, written in aligned blocks around the page cache where the file system
/// allows it. Call [`DirectFile::finish`]: dropping it unfinished leaves a partial file.
pub struct DirectFile {
    path: PathBuf,
    file: File,
    /// Whether `file` was opened with `O_DIRECT` (until a refusal turns it off).
    direct: bool,
    /// `BLOCK` bytes from `start` on are the aligned block being filled; `buf` is
    /// allocated `ALIGN` bytes larger so that an aligned start exists.
    buf: Vec<u8>,
    start: usize,
    filled: usize,
    /// Bytes written to the file so far (whole blocks).
    written: u64,
}

impl DirectFile {
    /// Create (or truncate) the file at `path`.
    pub fn create(path: &Path) -> io::Result<DirectFile> {
        let (file, direct) = match open(path, true) {
            Ok(f) => (f, true),
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => (open(path, false)?, false),
            Err(e) => return Err(e),
        };
        let buf = vec![0u8; BLOCK + ALIGN];
        let start = (ALIGN - buf.as_ptr() as usize % ALIGN) % ALIGN;
        Ok(DirectFile {
            path: path.to_path_buf(),
            file,
            direct,
            buf,
            start,
            filled: 0,
            written: 0,
        })
    }

    /// Whether the file is (still) written around the page cache.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Write out the buffered bytes, trim the last block's padding and fsync the file.
    pub fn finish(mut self) -> io::Result<()> {
        let len = self.written + self.filled as u64;
        if self.filled > 0 {
            if self.direct {
                // O_DIRECT writes whole aligned blocks: pad the last one, then cut the
                // file back to its length.
                let padded = self.filled.div_ceil(ALIGN) * ALIGN;
                debug_assert!(padded <= BLOCK);
                self.buf[self.start + self.filled..self.start + padded].fill(0);
                self.write_block(padded)?;
            } else {
                self.write_block(self.filled)?;
            }
            self.file.set_len(len)?;
        }
        self.file.sync_all()
    }

    fn write_block(&mut self, len: usize) -> io::Result<()> {
        let block = &self.buf[self.start..self.start + len];
        match self.file.write_all(block) {
            // Some file systems accept O_DIRECT at open and refuse it at a write (or
            // want a coarser alignment than ours for the padded last block): go on
            // through the page cache from the last whole block written.
            Err(e) if self.direct && e.kind() == io::ErrorKind::InvalidInput => {
                let mut file = OpenOptions::new().write(true).open(&self.path)?;
                file.seek(SeekFrom::Start(self.written))?;
                file.write_all(block)?;
                self.file = file;
                self.direct = false;
            }
            other => other?,
        }
        self.written += len as u64;
        self.filled = 0;
        Ok(())
    }
}

/// Open `path` for writing, truncated; `direct` asks for `O_DIRECT` (Linux only: other
/// systems write through their cache, as if the file system had refused it).
fn open(path: &Path, direct: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(target_os = "linux")]
    if direct {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_DIRECT);
    }
    #[cfg(not(target_os = "linux"))]
    if direct {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    options.open(path)
}

impl Write for DirectFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        // A full block goes out before more is taken, so an error consumes nothing.
        if self.filled == BLOCK {
            self.write_block(BLOCK)?;
        }
        let n = data.len().min(BLOCK - self.filled);
        let at = self.start + self.filled;
        self.buf[at..at + n].copy_from_slice(&data[..n]);
        self.filled += n;
        Ok(n)
    }

    /// Blocks are written as they fill; the rest waits for [`DirectFile::finish`].
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(dir: &Path, len: usize, pieces: usize) {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
        let path = dir.join(format!("f-{len}"));
        let mut f = DirectFile::create(&path).expect("create");
        let step = len.div_ceil(pieces.max(1)).max(1);
        for chunk in data.chunks(step) {
            f.write_all(chunk).expect("write");
        }
        f.finish().expect("finish");
        assert_eq!(std::fs::read(&path).expect("read"), data, "{len} bytes");
    }

    #[test]
    fn files_read_back_byte_for_byte_whatever_their_length() {
        let dir = tempfile::tempdir().expect("tempdir");
        for len in [
            0,
            1,
            4095,
            4096,
            4097,
            BLOCK - 1,
            BLOCK,
            BLOCK + 1,
            2 * BLOCK + 12_345,
        ] {
            roundtrip(dir.path(), len, 7);
        }
    }

    #[test]
    fn the_repository_file_system_is_written_around_the_page_cache() {
        // The repository lives on a disk file system (ext4 on the project machine),
        // which takes O_DIRECT: a file past a whole block must still be direct, or an
        // alignment mistake would have fallen back to the page cache unnoticed.
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).expect("tempdir");
        let path = dir.path().join("direct");
        let mut f = DirectFile::create(&path).expect("create");
        f.write_all(&vec![7u8; BLOCK + 100]).expect("write");
        f.write_all(b"tail").expect("write");
        assert!(f.is_direct(), "O_DIRECT fell back to buffered writes");
        f.finish().expect("finish");
        assert_eq!(
            std::fs::metadata(&path).expect("stat").len(),
            BLOCK as u64 + 104
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_file_system_without_o_direct_gets_the_same_bytes() {
        // /dev/shm is tmpfs: depending on the kernel it refuses O_DIRECT at open, at the
        // first write, or takes it; the file must come out the same in every case.
        let dir = tempfile::tempdir_in("/dev/shm").expect("tempdir on tmpfs");
        for len in [5, BLOCK + 3] {
            roundtrip(dir.path(), len, 3);
        }
    }

    #[test]
    fn a_shorter_rewrite_leaves_no_old_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        roundtrip(dir.path(), 3 * ALIGN + 10, 1);
        let path = dir.path().join(format!("f-{}", 3 * ALIGN + 10));
        let mut f = DirectFile::create(&path).expect("create");
        f.write_all(b"short").expect("write");
        f.finish().expect("finish");
        assert_eq!(std::fs::read(&path).expect("read"), b"short");
    }
}
