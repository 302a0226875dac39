//! The body of a request on the HTTP/2 path ([`crate::proxy::service`]): an `h2` stream's
//! DATA frames and trailers, with the stream's receive window given back as each frame is
//! taken, or the body of any other server that serves the service (the HTTP/1.1 conformance
//! tests serve it with hyper's, as their reference).
//!
//! A reset with `NO_ERROR` ends an `h2` body without an error: RFC 9113 §8.1 lets a client
//! stop sending once the response has begun. `h2` itself checks a declared `Content-Length`
//! against the DATA received.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderMap, CONTENT_LENGTH};
use http_body::{Body, Frame, SizeHint};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One request's body.
pub struct ClientBody {
    kind: Kind,
}

enum Kind {
    Stream {
        recv: h2::RecvStream,
        /// The declared length still to come, when the request declared one.
        left: Option<u64>,
        data_done: bool,
    },
    Other(Pin<Box<dyn Body<Data = Bytes, Error = BoxError> + Send + Sync>>),
}

impl std::fmt::Debug for ClientBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Stream { left, .. } => f.debug_struct("ClientBody").field("left", left).finish(),
            Kind::Other(_) => f.write_str("ClientBody(other)"),
        }
    }
}

impl ClientBody {
    /// The body of an `h2` stream whose request head carried `headers`.
    pub fn stream(recv: h2::RecvStream, headers: &HeaderMap) -> ClientBody {
        let left = if recv.is_end_stream() {
            Some(0)
        } else {
            headers
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok())
        };
        ClientBody {
            kind: Kind::Stream {
                recv,
                left,
                data_done: false,
            },
        }
    }

    /// Any other server's body.
    pub fn other<B>(body: B) -> ClientBody
    where
        B: Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        use http_body_util::BodyExt;
        ClientBody {
            kind: Kind::Other(Box::pin(body.map_err(Into::into))),
        }
    }
}

/// A stream error, unless it is the client's `NO_ERROR` reset that ends a body early.
fn early_end(e: h2::Error) -> Option<BoxError> {
    (e.reason() != Some(h2::Reason::NO_ERROR)).then(|| e.into())
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let (recv, left, data_done) = match &mut self.get_mut().kind {
            Kind::Other(body) => return body.as_mut().poll_frame(cx),
            Kind::Stream {
                recv,
                left,
                data_done,
            } => (recv, left, data_done),
        };
        if !*data_done {
            match std::task::ready!(recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // The window is given back as the frame is taken: the node's socket, not
                    // this buffer, is where the upload waits.
                    let _ = recv.flow_control().release_capacity(data.len());
                    if let Some(left) = left {
                        *left = left.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => return Poll::Ready(early_end(e).map(Err)),
                None => *data_done = true,
            }
        }
        match std::task::ready!(recv.poll_trailers(cx)) {
            Ok(trailers) => Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t)))),
            Err(e) => Poll::Ready(early_end(e).map(Err)),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Stream { recv, .. } => recv.is_end_stream(),
            Kind::Other(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Stream { left: Some(n), .. } => SizeHint::with_exact(*n),
            Kind::Stream { left: None, .. } => SizeHint::default(),
            Kind::Other(body) => body.size_hint(),
        }
    }
}
