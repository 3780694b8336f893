//! The filesystem's one error: an errno, a message with the request and the server's reason,
//! and the log level it deserves. The error kind → errno table lives here, once (DESIGN.md "Errors").

use crate::client::{ErrorKind, StorageError};

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct FsError {
    pub errno: i32,
    pub message: String,
    /// Expected misses (a lookup of an absent name) log at debug, the rest at warn.
    pub quiet: bool,
}

pub type FsResult<T> = Result<T, FsError>;

impl FsError {
    pub fn new(errno: i32, message: impl Into<String>) -> FsError {
        FsError {
            errno,
            message: message.into(),
            quiet: false,
        }
    }
    pub fn quiet(errno: i32, message: impl Into<String>) -> FsError {
        FsError {
            errno,
            message: message.into(),
            quiet: true,
        }
    }
}

/// DESIGN.md's table: refused token or access → EACCES, not found → ENOENT, conflict →
/// ENOTEMPTY (container delete; the caller picks another errno where a conflict means
/// something else), over quota → EDQUOT, malformed → EINVAL, no answer or a server fault
/// after the retries (or an answer that makes no sense) → EIO.
pub fn errno_of(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::Unauthorized | ErrorKind::Forbidden => libc::EACCES,
        ErrorKind::NotFound => libc::ENOENT,
        ErrorKind::Conflict => libc::ENOTEMPTY,
        ErrorKind::ConditionFailed => libc::EAGAIN,
        ErrorKind::QuotaExceeded => libc::EDQUOT,
        ErrorKind::Invalid => libc::EINVAL,
        ErrorKind::Unsupported => libc::EOPNOTSUPP,
        ErrorKind::Unavailable | ErrorKind::Protocol => libc::EIO,
    }
}

impl From<StorageError> for FsError {
    fn from(e: StorageError) -> FsError {
        let mut message = e.to_string();
        if e.kind() == ErrorKind::Unauthorized {
            message.push_str(" (the token was refused: is it expired or revoked?)");
        }
        FsError::new(errno_of(e.kind()), message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errno_of_status(status: u16) -> i32 {
        errno_of(StorageError::status("GET", "/", status, "").kind)
    }

    #[test]
    fn table() {
        assert_eq!(errno_of_status(401), libc::EACCES);
        assert_eq!(errno_of_status(403), libc::EACCES);
        assert_eq!(errno_of_status(404), libc::ENOENT);
        assert_eq!(errno_of_status(409), libc::ENOTEMPTY);
        assert_eq!(errno_of_status(413), libc::EDQUOT);
        assert_eq!(errno_of_status(400), libc::EINVAL);
        assert_eq!(errno_of_status(416), libc::EINVAL);
        assert_eq!(errno_of_status(503), libc::EIO);
        assert_eq!(errno_of(StorageError::network("GET", "/", "refused").kind), libc::EIO);
    }
}
