//! Where the speaker records which interfaces it attached the responder to and which it
//! left alone, and why ([`InterfaceReport`]), for `metallb inspect`. Not in the pin
//! directory: a bpf filesystem holds only BPF objects, no regular file. One file per pin
//! directory, under `/run/metallb`: `/sys/fs/bpf/metallb` is recorded in
//! `/run/metallb/sys_fs_bpf_metallb.interfaces.json`.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use crate::plan::InterfaceReport;

/// The directory of the records (tmpfs on systemd hosts: gone at reboot, as the pins).
pub const RUN_DIR: &str = "/run/metallb";

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reading {path}: not a record of this version: {source}")]
    Format {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The record of the speaker using `pin_dir`.
pub fn path_for(pin_dir: &Path) -> PathBuf {
    let absolute = std::path::absolute(pin_dir).unwrap_or_else(|_| pin_dir.to_owned());
    let flat = absolute
        .to_string_lossy()
        .trim_matches('/')
        .replace('/', "_");
    Path::new(RUN_DIR).join(format!("{flat}.interfaces.json"))
}

/// Writes the record whole (written aside, then renamed over the old one), so that a
/// reader never sees half of it. Returns where.
pub fn write(pin_dir: &Path, report: &InterfaceReport) -> Result<PathBuf, ReportError> {
    let path = path_for(pin_dir);
    let error = |source| ReportError::Write {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(RUN_DIR).map_err(error)?;
    let aside = path.with_extension(format!("json.{}", std::process::id()));
    let text = serde_json::to_vec_pretty(report)
        .map_err(std::io::Error::other)
        .map_err(error)?;
    let written = std::fs::File::create(&aside).and_then(|mut file| {
        file.write_all(&text)?;
        file.sync_all()
    });
    if let Err(source) = written.and_then(|()| std::fs::rename(&aside, &path)) {
        let _ = std::fs::remove_file(&aside);
        return Err(error(source));
    }
    Ok(path)
}

/// [`write`], unless `report` is `last` (what was written last) and the file is still
/// there: an apply that attaches the same interfaces writes nothing (the write ends
/// with an fsync, milliseconds where /run is on a disk). Returns whether it wrote;
/// `last` is what the file holds after it.
pub fn write_changed(
    pin_dir: &Path,
    report: &InterfaceReport,
    last: &mut Option<InterfaceReport>,
) -> Result<bool, ReportError> {
    if last.as_ref() == Some(report) && path_for(pin_dir).exists() {
        return Ok(false);
    }
    *last = None;
    write(pin_dir, report)?;
    *last = Some(report.clone());
    Ok(true)
}

/// The record of the speaker using `pin_dir`; `None` when there is none.
pub fn read(pin_dir: &Path) -> Result<Option<InterfaceReport>, ReportError> {
    let path = path_for(pin_dir);
    let shown = || path.display().to_string();
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(source) if source.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ReportError::Read {
                path: shown(),
                source,
            });
        }
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|source| ReportError::Format {
            path: shown(),
            source,
        })
}

/// Removes the record (the datapath it describes is gone).
pub fn remove(pin_dir: &Path) -> Result<(), ReportError> {
    let path = path_for(pin_dir);
    match std::fs::remove_file(&path) {
        Err(source) if source.kind() != std::io::ErrorKind::NotFound => Err(ReportError::Write {
            path: path.display().to_string(),
            source,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_record_per_pin_directory() {
        assert_eq!(
            path_for(Path::new("/sys/fs/bpf/metallb")),
            Path::new("/run/metallb/sys_fs_bpf_metallb.interfaces.json")
        );
        assert_eq!(
            path_for(Path::new("/sys/fs/bpf/metallb/")),
            Path::new("/run/metallb/sys_fs_bpf_metallb.interfaces.json")
        );
        assert_eq!(
            path_for(Path::new("/sys/fs/bpf/mlb-x-1-0")),
            Path::new("/run/metallb/sys_fs_bpf_mlb-x-1-0.interfaces.json")
        );
    }
}
