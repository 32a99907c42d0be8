//! Connection limits of the HTTP server: at most `http.max_connections` open at once, so that a
//! flood of idle connections cannot take every file descriptor (and with them ClickHouse's
//! connections). A connection over the cap is closed as soon as it is accepted, before any TLS
//! handshake; the rest hold a permit until they close.
//!
//! Deadlines: a connection must send its first byte within `http.header_read_timeout_secs`
//! (hyper's own header-read timeout only starts once a request has begun, so a silent connection
//! would otherwise stay forever), and one with nothing read or written for
//! `http.idle_timeout_secs` is closed (an idle keep-alive, a stalled peer). Slow headers are
//! hyper's header-read timeout, slow bodies the handlers' body deadline.
//!
//! axum-server has neither a connection cap nor these deadlines, hence this acceptor.

use axum_server::accept::Accept;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// An acceptor that admits a connection only with a free permit.
#[derive(Clone)]
pub struct Capped<A> {
    inner: A,
    permits: Arc<Semaphore>,
    deadlines: Deadlines,
}

/// How long a connection may stay silent: before its first byte, and between any two reads or
/// writes after it.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    pub first_byte: Duration,
    pub idle: Duration,
}

impl<A> Capped<A> {
    pub fn new(inner: A, max_connections: usize, deadlines: Deadlines) -> Capped<A> {
        Capped {
            inner,
            permits: Arc::new(Semaphore::new(max_connections)),
            deadlines,
        }
    }
}

impl<I, S, A> Accept<I, S> for Capped<A>
where
    A: Accept<I, S> + Clone + Send + 'static,
    A::Future: Send + 'static,
    I: Send + 'static,
    S: Send + 'static,
{
    type Stream = Held<A::Stream>;
    type Service = A::Service;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            drop(stream);
            return Box::pin(async {
                Err(io::Error::other(
                    "http.max_connections reached: connection closed",
                ))
            });
        };
        let accepted = self.inner.accept(stream, service);
        let deadlines = self.deadlines;
        Box::pin(async move {
            let (stream, service) = accepted.await?;
            Ok((
                Held {
                    stream,
                    _permit: permit,
                    deadline: Box::pin(tokio::time::sleep(deadlines.first_byte)),
                    idle: deadlines.idle,
                },
                service,
            ))
        })
    }
}

/// A connection, the permit it holds until it closes, and its silence deadline.
pub struct Held<T> {
    stream: T,
    _permit: OwnedSemaphorePermit,
    deadline: Pin<Box<Sleep>>,
    idle: Duration,
}

impl<T> Held<T> {
    fn alive(&mut self) {
        self.deadline.as_mut().reset(Instant::now() + self.idle);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Held<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.alive();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection silent past its deadline",
                ))),
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Held<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.alive();
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.alive();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
