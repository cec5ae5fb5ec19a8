//! One agent per pin directory: an exclusive `flock` on the directory itself (bpffs
//! holds no regular files, so there is no lock file), held as long as the
//! [`Datapath`](super::Datapath) lives. Two agents on one directory would sync their
//! own plans over each other's maps, and the first to exit would unpin both.
//!
//! The kernel releases the lock when the holder exits, however it exits: a `kill -9`
//! leaves no stale lock, and `--keep-datapath` adoption works as soon as the first
//! agent is gone. flock records no owner: the holder's pid is read from `/proc/locks`
//! for the error message.

use std::{
    fs::File,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use nix::{
    errno::Errno,
    fcntl::{Flock, FlockArg},
};

/// How often a waiting agent tries the lock again.
const RETRY: Duration = Duration::from_millis(50);

/// The held lock; released when dropped (or when the process exits).
#[derive(Debug)]
pub struct PinDirLock {
    _lock: Flock<File>,
}

#[derive(Debug, thiserror::Error)]
pub enum PinLockError {
    #[error(
        "pin directory {dir} is in use by another agent ({holder}); one agent per pin directory: stop it, give this one another --pin-dir, or wait for it with --pin-dir-wait"
    )]
    Held { dir: PathBuf, holder: Holder },
    #[error(
        "pin directory {dir} was still in use by another agent ({holder}) after waiting {waited:?} (--pin-dir-wait)"
    )]
    Timeout {
        dir: PathBuf,
        holder: Holder,
        waited: Duration,
    },
    #[error("locking pin directory {dir}: {source}")]
    Io {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Who holds a lock, as far as `/proc/locks` tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    Pid(u32),
    /// Not listed (in another PID namespace, or released in between).
    Unknown,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Holder::Pid(pid) => write!(f, "pid {pid}"),
            Holder::Unknown => f.write_str("pid unknown"),
        }
    }
}

impl PinDirLock {
    /// Takes the lock on the existing directory `dir`; if another agent holds it,
    /// fails at once (`wait` zero) or tries again until `wait` has passed.
    pub fn acquire(dir: &Path, wait: Duration) -> Result<Self, PinLockError> {
        let io = |source| PinLockError::Io {
            dir: dir.to_owned(),
            source,
        };
        let started = Instant::now();
        loop {
            let file = File::open(dir).map_err(io)?;
            let locked_inode = file.metadata().map_err(io)?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => {
                    // The holder may have removed the directory (`shutdown`) before
                    // letting go: then this lock is on a directory nobody will use,
                    // and the path is, or will be, a new one.
                    let now = std::fs::metadata(dir).map_err(io)?;
                    if now.dev() == locked_inode.dev() && now.ino() == locked_inode.ino() {
                        return Ok(Self { _lock: lock });
                    }
                }
                Err((_, Errno::EWOULDBLOCK)) => {
                    if started.elapsed() >= wait {
                        let holder = holder_of(&locked_inode);
                        let dir = dir.to_owned();
                        return Err(if wait.is_zero() {
                            PinLockError::Held { dir, holder }
                        } else {
                            PinLockError::Timeout {
                                dir,
                                holder,
                                waited: wait,
                            }
                        });
                    }
                }
                Err((_, errno)) => return Err(io(std::io::Error::from(errno))),
            }
            std::thread::sleep(RETRY);
        }
    }
}

fn holder_of(metadata: &std::fs::Metadata) -> Holder {
    let dev = metadata.dev();
    std::fs::read_to_string("/proc/locks")
        .ok()
        .and_then(|locks| {
            flock_holder(
                &locks,
                nix::sys::stat::major(dev),
                nix::sys::stat::minor(dev),
                metadata.ino(),
            )
        })
        .map_or(Holder::Unknown, Holder::Pid)
}

/// The pid holding a flock on the inode `(major, minor, ino)`, from the text of
/// `/proc/locks`: `N: FLOCK  ADVISORY  WRITE PID MAJ:MIN:INO START END`, majors and
/// minors in hex; a waiter's line has `->` after the number.
fn flock_holder(locks: &str, major: u64, minor: u64, ino: u64) -> Option<u32> {
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, "FLOCK", _, _, pid, id, ..] = fields.as_slice() else {
            return None;
        };
        let mut parts = id.split(':');
        let (Some(maj), Some(min), Some(inode), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let same = u64::from_str_radix(maj, 16).ok()? == major
            && u64::from_str_radix(min, 16).ok()? == minor
            && inode.parse::<u64>().ok()? == ino;
        same.then(|| pid.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_is_read_from_proc_locks() {
        let locks = "\
1: POSIX  ADVISORY  WRITE 700 00:2a:4242 0 EOF
2: FLOCK  ADVISORY  WRITE 812 00:19:99 0 EOF
2: -> FLOCK  ADVISORY  WRITE 813 00:2a:4242 0 EOF
3: FLOCK  ADVISORY  WRITE 901 00:2a:4242 0 EOF
4: OFDLCK ADVISORY  READ  -1 00:2a:4242 0 EOF
";
        let cases = [
            (
                "the flock holder, not a POSIX lock nor a waiter",
                0x2a,
                4242,
                Some(901),
            ),
            ("another device", 0x2b, 4242, None),
            ("another inode", 0x2a, 4243, None),
            ("hex minor", 0x19, 99, Some(812)),
        ];
        for (name, minor, ino, want) in cases {
            assert_eq!(flock_holder(locks, 0, minor, ino), want, "{name}");
        }
        assert_eq!(flock_holder("garbage\n1: FLOCK\n", 0, 1, 1), None);
    }

    #[test]
    fn a_second_lock_is_refused_naming_this_process_and_released_on_drop() {
        let dir = std::env::temp_dir().join(format!("pin-lock-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = PinDirLock::acquire(&dir, Duration::ZERO).unwrap();
        let error = PinDirLock::acquire(&dir, Duration::ZERO).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "pin directory {} is in use by another agent (pid {}); one agent per pin directory: stop it, give this one another --pin-dir, or wait for it with --pin-dir-wait",
                dir.display(),
                std::process::id()
            )
        );
        let started = Instant::now();
        let error = PinDirLock::acquire(&dir, Duration::from_millis(200)).unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(
            matches!(error, PinLockError::Timeout { holder: Holder::Pid(pid), .. } if pid == std::process::id()),
            "{error:?}"
        );
        drop(first);
        let again = PinDirLock::acquire(&dir, Duration::ZERO).unwrap();
        drop(again);
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn a_waiter_takes_the_lock_once_the_holder_lets_go() {
        let dir = std::env::temp_dir().join(format!("pin-lock-wait-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = PinDirLock::acquire(&dir, Duration::ZERO).unwrap();
        let waiter = {
            let dir = dir.clone();
            std::thread::spawn(move || PinDirLock::acquire(&dir, Duration::from_secs(10)))
        };
        std::thread::sleep(Duration::from_millis(100));
        drop(first);
        waiter.join().unwrap().unwrap();
        std::fs::remove_dir(&dir).unwrap();
    }
}
