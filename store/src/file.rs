//! Creating a secret file that several processes sharing a data dir may race to create.

use std::io::{self, Write as _};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `bytes` to `path` (mode 0600, fsynced, parent directories created) unless the file
/// already exists, in which case the existing file wins and `Ok(false)` is returned.
///
/// The bytes go to a temporary file with a name of this call's own, which is then hard-linked
/// into place: readers never see a partly written file, and pods starting at the same moment
/// never remove each other's temporary files.
pub fn create_once(path: &Path, bytes: &[u8]) -> io::Result<bool> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!(
        "tmp.{}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_writer_wins_and_no_temporary_file_remains() {
        let dir = std::env::temp_dir().join(format!("juntos-secret-file-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("keys").join("secret");
        let winners: Vec<bool> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0u8..8)
                .map(|i| {
                    let path = &path;
                    scope.spawn(move || create_once(path, &[i; 32]))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread").expect("create"))
                .collect()
        });
        assert_eq!(winners.iter().filter(|w| **w).count(), 1);
        let stored = std::fs::read(&path).expect("read");
        assert_eq!(stored.len(), 32);
        let entries = std::fs::read_dir(path.parent().expect("parent"))
            .expect("read dir")
            .count();
        assert_eq!(entries, 1, "only the secret remains");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
