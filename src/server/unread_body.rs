//! Answers given before the request body was read (a refused upload, say) close the
//! connection and say so. The unread rest of the body is still on the wire: hyper drops such
//! a connection after the answer, and a client that was not told `Connection: close` puts it
//! back in its pool and loses its next request on it (seen as an "incomplete message" in
//! the test client, after a 403 to a 1 MiB block upload).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Version};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

pub async fn close_if_unread(req: Request, next: Next) -> Response {
    let http1 = req.version() <= Version::HTTP_11;
    let (parts, body) = req.into_parts();
    // An HTTP/1 request with neither length nor chunks has no body. Asked of the headers:
    // the body-timeout wrapper says "not at its end" of every body, an empty one too, and
    // every answer then closed its connection.
    let h = &parts.headers;
    let no_body = !h.contains_key(header::TRANSFER_ENCODING)
        && h.get(header::CONTENT_LENGTH)
            .is_none_or(|v| v.to_str().is_ok_and(|v| v.trim() == "0"));
    let read = Arc::new(AtomicBool::new(no_body || body.is_end_stream()));
    let tracked = Tracked {
        inner: body,
        read: read.clone(),
    };
    let mut resp = next.run(Request::from_parts(parts, Body::new(tracked))).await;
    if http1 && !read.load(Ordering::Acquire) {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// A request body that notes when it has been read to its end.
struct Tracked {
    inner: Body,
    read: Arc<AtomicBool>,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.read.store(true, Ordering::Release),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.read.store(true, Ordering::Release),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
