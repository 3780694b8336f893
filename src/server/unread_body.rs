//! Answers given before the request body was read (a refused upload, say) close the
//! connection and say so. The unread rest of the body is still on the wire: hyper drops such
//! a connection after the answer, and a client that was not told `Connection: close` puts it
//! back in its pool and loses its next request on it (seen as an "incomplete message" in
//! the test client, after a 403 to a 1 MiB block upload).
//!
//! Before such an answer, the rest of a body of at most [`DRAIN_MAX`] bytes is read and
//! dropped (for at most [`DRAIN_TIME`]): a client still sending a refused block otherwise
//! finds the connection reset under its write (EPIPE, seen in CI) and never reads the 403
//! that says why. A client that asked `Expect: 100-continue` has not sent its body and is
//! answered at once.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Version};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::oneshot;

/// The largest unread body read to its end before a refusal (a block is 4 MiB).
pub const DRAIN_MAX: u64 = 8 << 20;
/// How long a refusal waits for the rest of such a body.
pub const DRAIN_TIME: Duration = Duration::from_secs(5);

pub async fn close_if_unread(req: Request, next: Next) -> Response {
    let http1 = req.version() <= Version::HTTP_11;
    let (parts, body) = req.into_parts();
    // An HTTP/1 request with neither length nor chunks has no body. Asked of the headers:
    // the body-timeout wrapper says "not at its end" of every body, an empty one too, and
    // every answer then closed its connection.
    let h = &parts.headers;
    let length = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let no_body = !h.contains_key(header::TRANSFER_ENCODING) && length.is_none_or(|n| n == 0);
    let drain = http1
        && length.is_some_and(|n| n <= DRAIN_MAX)
        && !h
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let read = Arc::new(AtomicBool::new(no_body || body.is_end_stream()));
    let (give_back, mut rest) = oneshot::channel();
    let tracked = Tracked {
        inner: Some(body),
        read: read.clone(),
        give_back: drain.then_some(give_back),
    };
    let mut resp = next.run(Request::from_parts(parts, Body::new(tracked))).await;
    if http1 && !read.load(Ordering::Acquire) {
        // (the handler dropped the body unread: what is left of it came back here; a body
        // still held elsewhere is not waited for)
        if let Ok(mut rest) = rest.try_recv() {
            let _ = tokio::time::timeout(DRAIN_TIME, async { while let Some(Ok(_)) = rest.frame().await {} }).await;
        }
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// A request body that notes when it has been read to its end, and gives what is left of it
/// back when dropped before.
struct Tracked {
    inner: Option<Body>,
    read: Arc<AtomicBool>,
    give_back: Option<oneshot::Sender<Body>>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let (Some(body), Some(to)) = (self.inner.take(), self.give_back.take()) {
            if !self.read.load(Ordering::Acquire) {
                let _ = to.send(body);
            }
        }
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(&mut *inner).poll_frame(cx);
        let end = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => inner.is_end_stream(),
            Poll::Ready(Some(Err(_))) => {
                // (a body that failed, cut or timed out, is not waited for again)
                self.give_back = None;
                false
            }
            Poll::Pending => false,
        };
        if end {
            self.read.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map(|b| b.size_hint()).unwrap_or_default()
    }
}
