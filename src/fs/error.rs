//! The filesystem's one error: an errno, a message with the request and the server's reason,
//! and the log level it deserves. HTTP status → errno lives here, once (DESIGN.md "Errors").

use crate::client::ClientError;

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

/// DESIGN.md's table: 401/403 → EACCES, 404 → ENOENT, 409 → ENOTEMPTY (container delete; the
/// caller picks another errno where 409 means something else), 413 → EDQUOT, 400/416 → EINVAL,
/// network and 5xx after the retries → EIO.
pub fn errno_of_status(status: u16) -> i32 {
    match status {
        401 | 403 => libc::EACCES,
        404 => libc::ENOENT,
        409 => libc::ENOTEMPTY,
        412 => libc::EAGAIN,
        413 => libc::EDQUOT,
        400 | 416 | 422 => libc::EINVAL,
        405 | 501 => libc::EOPNOTSUPP,
        _ => libc::EIO,
    }
}

impl From<ClientError> for FsError {
    fn from(e: ClientError) -> FsError {
        let errno = match &e {
            ClientError::Status { status, .. } => errno_of_status(*status),
            ClientError::Network { .. } | ClientError::Protocol { .. } => libc::EIO,
        };
        let mut message = e.to_string();
        if e.status() == Some(401) {
            message.push_str(" (the token was refused: is it expired or revoked?)");
        }
        FsError::new(errno, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
