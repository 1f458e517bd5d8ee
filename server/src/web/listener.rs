//! The web listener: `web_threads` threads (one per core by default), each with its own
//! single-threaded tokio runtime, all accepting connections from the one socket bound to
//! `listen`.
//!
//! Copr's polls of the routing rules are answered on the thread that accepted the connection,
//! with no hand-over between threads, when their token is remembered and the rules are fresh
//! (nearly every poll; see [`routing_api::poll`]): on tokio's multi-thread runtime, waking a
//! worker on the other core for every request cost about a tenth of a `304`. Everything else
//! (pages, server functions, the APIs, a poll that must ask the database) runs on the main
//! runtime, where the database pool, the engine and Leptos live; its answer's body is relayed
//! back to the connection's thread as it is produced, so a page or an event stream streams as
//! before.
//!
//! HTTP/1.1 only, without upgrades (nothing here uses WebSockets), as `axum::serve` served it
//! with the features this project builds axum with.
//!
//! One socket, not one per thread with `SO_REUSEPORT`: that measured the same, but would let a
//! second server started by mistake on the same port quietly take half the connections instead
//! of failing with "address in use".

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Either, ready};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::{Front, routing_api, secured};

/// The web listener's socket, bound and listening (connections queue from now on), and how
/// many threads will accept from it.
pub struct Listeners {
    socket: std::net::TcpListener,
    threads: usize,
    addr: SocketAddr,
}

/// How many threads serve the web listener when `web_threads` is 0: one per core.
pub fn threads(configured: usize) -> usize {
    match configured {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

impl Listeners {
    /// Binds `addr` for `threads` threads (at least one).
    pub fn bind(addr: SocketAddr, threads: usize) -> std::io::Result<Listeners> {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        let addr = socket.local_addr()?;
        // `listen` registers the socket with this runtime; each thread registers its handle
        // with its own.
        Ok(Listeners {
            socket: socket.listen(1024)?.into_std()?,
            threads: threads.max(1),
            addr,
        })
    }

    /// How many threads will serve it.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `front` until `stop` is cancelled, then lets open connections finish their
    /// requests. Requests other than polls run on `main`. The future ends when every thread
    /// has; with an error when one could not run or panicked. Each thread accepts from its own
    /// handle of the socket.
    pub fn serve(
        self,
        front: Front,
        main: Handle,
        stop: CancellationToken,
    ) -> std::io::Result<impl Future<Output = Result<(), String>> + Send + 'static> {
        let threads = self.threads;
        let (done, mut ended) = mpsc::channel::<Result<(), String>>(threads);
        // Stops the threads already started when a later one cannot start.
        let started = stop.child_token();
        for i in 0..threads {
            let (front, main, stop, done) =
                (front.clone(), main.clone(), started.clone(), done.clone());
            let spawned = self.socket.try_clone().and_then(|socket| {
                std::thread::Builder::new()
                    .name(format!("web-{i}"))
                    .spawn(move || {
                        let outcome =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                serve_one(socket, front, main, stop)
                            }))
                            .unwrap_or_else(|_| Err("a web listener thread panicked".to_string()));
                        let _ = done.blocking_send(outcome);
                    })
            });
            if let Err(e) = spawned {
                started.cancel();
                return Err(e);
            }
        }
        Ok(async move {
            for _ in 0..threads {
                match ended.recv().await {
                    Some(Ok(())) => {}
                    Some(Err(why)) => return Err(why),
                    None => return Err("the web listener threads stopped".to_string()),
                }
            }
            Ok(())
        })
    }
}

/// One thread's listener, on its own runtime.
fn serve_one(
    socket: std::net::TcpListener,
    front: Front,
    main: Handle,
    stop: CancellationToken,
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a web listener thread's runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(socket)
            .map_err(|e| format!("the web listener failed: {e}"))?;
        let connections = GracefulShutdown::new();
        let builder = http1::Builder::new();
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        refused(e, &stop).await;
                        continue;
                    }
                },
                _ = stop.cancelled() => break,
            };
            // Small answers (a 304 to Copr's poll) go out at once, as nginx does on
            // keep-alive connections, instead of waiting on Nagle's algorithm for the
            // previous ACK.
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
            let service = Connection {
                front: front.clone(),
                peer,
                main: main.clone(),
            };
            let conn = connections.watch(builder.serve_connection(TokioIo::new(tcp), service));
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::trace!(error = %e, "connection ended with an error");
                }
            });
            // Every thread is woken by a new connection: let the others take the next one,
            // so a burst of connections is spread over the threads instead of taken by the
            // first one awake.
            tokio::task::yield_now().await;
        }
        drop(listener);
        connections.shutdown().await;
        Ok(())
    })
}

/// An `accept` that failed: a connection that went away before it was accepted is not worth
/// a word; anything else (out of file descriptors) is logged and waited out, as `axum::serve`
/// does, unless the listener is stopping.
async fn refused(e: std::io::Error, stop: &CancellationToken) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "the web listener cannot accept connections; retrying in 1 s");
    tokio::select! {
        _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        _ = stop.cancelled() => {}
    }
}

/// One connection's service: polls answered here, the rest on the main runtime.
#[derive(Clone)]
struct Connection {
    front: Front,
    peer: SocketAddr,
    main: Handle,
}

impl hyper::service::Service<hyper::Request<Incoming>> for Connection {
    type Response = Response;
    type Error = Infallible;
    type Future = routing_api::Answer;

    fn call(&self, req: hyper::Request<Incoming>) -> routing_api::Answer {
        if let Some(form) = routing_api::polled(req.uri().path()) {
            return match routing_api::poll(&self.front.state, form, req) {
                Either::Left(at_once) => Either::Left(ready(secured(at_once.into_inner()))),
                Either::Right(asks_the_database) => {
                    Either::Right(on_main(&self.main, asks_the_database.map(secured)))
                }
            };
        }
        let mut req: Request = req.map(Body::new);
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let mut router = self.front.router.clone();
        Either::Right(on_main(&self.main, async move {
            secured(tower::Service::call(&mut router, req).await)
        }))
    }
}

/// Runs `answer` on the main runtime; its response's body follows frame by frame. Dropping
/// the returned future, or the body, stops the work there (the client went away).
fn on_main<F>(main: &Handle, answer: F) -> BoxFuture<'static, Result<Response, Infallible>>
where
    F: Future<Output = Result<Response, Infallible>> + Send + 'static,
{
    let (head, headed) = oneshot::channel();
    let work = AbortOnDropHandle::new(main.spawn(async move {
        let Ok(response) = answer.await;
        let (parts, body) = response.into_parts();
        if body.is_end_stream() {
            let _ = head.send((parts, None));
            return;
        }
        let (frames, relayed) = mpsc::channel(8);
        if head
            .send((parts, Some((relayed, body.size_hint()))))
            .is_err()
        {
            return;
        }
        let mut body = body;
        while let Some(frame) = body.frame().await {
            let failed = frame.is_err();
            if frames.send(Some(frame)).await.is_err() || failed {
                return;
            }
        }
        let _ = frames.send(None).await;
    }));
    Box::pin(async move {
        let Ok((parts, relayed)) = headed.await else {
            // The handler panicked (the panic is in the log), or the main runtime is gone.
            return secured(Ok((
                StatusCode::INTERNAL_SERVER_ERROR,
                "The server failed while answering; the failure is in its log.\n",
            )
                .into_response()));
        };
        let body = match relayed {
            None => Body::empty(),
            Some((frames, left)) => Body::new(Relayed {
                frames,
                left,
                ended: false,
                _work: work,
            }),
        };
        Ok(Response::from_parts(parts, body))
    })
}

/// A body produced on the main runtime: its frames, then `None` once it ended. A relay that
/// stops without that `None` (the work panicked) is an error, so the client is not handed a
/// cut-off answer as a whole one.
struct Relayed {
    frames: mpsc::Receiver<Option<Result<Frame<Bytes>, axum::Error>>>,
    left: SizeHint,
    ended: bool,
    _work: AbortOnDropHandle<()>,
}

impl hyper::body::Body for Relayed {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        match this.frames.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Some(frame))) => {
                if let Ok(Some(data)) = frame.as_ref().map(Frame::data_ref) {
                    let n = data.len() as u64;
                    this.left.set_lower(this.left.lower().saturating_sub(n));
                    if let Some(upper) = this.left.upper() {
                        this.left.set_upper(upper.saturating_sub(n));
                    }
                }
                Poll::Ready(Some(frame))
            }
            Poll::Ready(Some(None)) => {
                this.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(None) => {
                this.ended = true;
                Poll::Ready(Some(Err(axum::Error::new(
                    "the server failed while sending the answer",
                ))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        self.left
    }
}
