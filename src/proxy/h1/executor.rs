//! The exchange executors: long-lived boxed futures that run one request at a time (its head
//! read, then its exchange), lent to a connection for the length of a request
//! ([`ExchangePool`]).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use super::context::{Conn, Context};
use super::exchange::{exchange, write_synthetic, Next};
use super::head::{read_head, HeadRead};
use crate::h1::RequestHead;
use crate::proxy::attempt::Synthetic;
use crate::proxy::buffers::{Buf, POOLED_BUFS};
use crate::proxy::client_io::ClientIo;

/// One request's connection: what the request owns while it runs, handed back when it ends.
pub struct Job {
    pub(super) client: ClientIo,
    pub(super) peer: SocketAddr,
    pub(super) ctx: Arc<Context>,
}

/// How one request on a connection ended.
pub enum Turn {
    /// Its exchange ran: what the connection does next.
    Exchanged(Next),
    /// No request came: the client closed, or sent a head that was answered with an error.
    Closed,
    /// The client spoke HTTP/2 with prior knowledge: these bytes were read.
    Http2(Vec<u8>),
}

/// Where a pooled executor takes its next job `J` from and leaves its result `D`.
pub struct Inbox<J, D> {
    job: Option<J>,
    done: Option<D>,
}

impl<J, D> Default for Inbox<J, D> {
    fn default() -> Self {
        Inbox {
            job: None,
            done: None,
        }
    }
}

type InboxRef<J, D> = Arc<Mutex<Inbox<J, D>>>;

fn lock<J, D>(inbox: &InboxRef<J, D>) -> std::sync::MutexGuard<'_, Inbox<J, D>> {
    inbox.lock().unwrap_or_else(|e| e.into_inner())
}

/// The next job put in `inbox`. It waits without a waker: only the connection that lends
/// the executor polls it, right after putting the job in.
fn next_job<J, D>(inbox: &InboxRef<J, D>) -> impl Future<Output = J> + '_ {
    std::future::poll_fn(|_| match lock(inbox).job.take() {
        Some(j) => Poll::Ready(j),
        None => Poll::Pending,
    })
}

/// A long-lived exchange loop in a box: [`executor`]'s future and its inbox.
struct Executor<E, J, D> {
    inbox: InboxRef<J, D>,
    fut: Pin<Box<E>>,
}

/// Exchange executors, lent to a connection for one request at a time.
///
/// Why: an exchange's state (the request's heads, the node connection, the retry loop, every
/// nested wait) is about 2 KiB. Inline in the connection's task every idle keep-alive
/// connection would hold it; boxed per request every request would allocate (and copy the
/// 2 KiB state into the box). An executor is one boxed future that runs exchanges in a loop,
/// polled by whichever connection borrowed it: an idle connection holds a few words, a
/// request allocates nothing. `E` is [`executor`]'s future, named only through
/// [`exchange_pool`]; `J` and `D` are what goes in and comes out of one exchange.
pub struct ExchangePool<E, J = (Job, Option<Buf>), D = (Job, Turn)> {
    make: fn(InboxRef<J, D>) -> E,
    free: Mutex<Vec<Executor<E, J, D>>>,
}

/// The exchange pool of one accept loop.
pub fn exchange_pool() -> ExchangePool<impl Future<Output = ()> + Send> {
    ExchangePool {
        make: executor,
        free: Mutex::new(Vec::new()),
    }
}

impl<E: Future<Output = ()>, J, D> ExchangePool<E, J, D> {
    /// Runs one exchange on a pooled executor, polled by the calling task. `None` only if
    /// the executor's loop ended. An executor whose exchange is dropped before it ends is
    /// dropped with it, never lent again.
    ///
    /// The job goes into the executor's inbox at once: the returned future holds the
    /// executor only, not a second copy of the job for as long as the exchange runs.
    pub(super) fn run(&self, job: J) -> impl Future<Output = Option<D>> + '_ {
        let popped = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let ex = popped.unwrap_or_else(|| {
            let inbox = InboxRef::default();
            Executor {
                fut: Box::pin((self.make)(inbox.clone())),
                inbox,
            }
        });
        lock(&ex.inbox).job = Some(job);
        let mut lent = Some(ex);
        std::future::poll_fn(move |cx| {
            let Some(ex) = lent.as_mut() else {
                return Poll::Ready(None);
            };
            if ex.fut.as_mut().poll(cx).is_ready() {
                lent = None;
                return Poll::Ready(None); // not reached: the loop does not end
            }
            let done = lock(&ex.inbox).done.take();
            let Some(done) = done else {
                return Poll::Pending;
            };
            if let Some(ex) = lent.take() {
                let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
                if free.len() < POOLED_BUFS {
                    free.push(ex);
                }
            }
            Poll::Ready(Some(done))
        })
    }
}

/// Runs the requests put in `inbox`, one after another, forever. Between two requests it
/// waits without a waker: only the connection that lends it polls it, and that connection
/// looks at `done` after every poll.
async fn executor(inbox: InboxRef<(Job, Option<Buf>), (Job, Turn)>) {
    // The parsed head is the executor's own, reused from request to request (its field list
    // keeps its capacity): an idle connection holds none.
    let mut head = RequestHead::new();
    loop {
        let (mut job, carry) = next_job(&inbox).await;
        let turn = request(&mut job, carry, &mut head).await;
        lock(&inbox).done = Some((job, turn));
    }
}

/// One request on the connection: its head (after `carry`, the bytes already read), then its
/// exchange.
async fn request(job: &mut Job, carry: Option<Buf>, head: &mut RequestHead) -> Turn {
    let mut buf = carry.unwrap_or_else(Buf::take);
    match read_head(&mut job.client, &mut buf.0, head, &job.ctx.cfg).await {
        HeadRead::Complete => {}
        HeadRead::Closed => return Turn::Closed,
        HeadRead::Http2 => return Turn::Http2(std::mem::take(&mut buf.0)),
        HeadRead::Bad(status, reason) => {
            let code = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST);
            let synthetic = Synthetic::new(code, reason, None);
            let _ = Box::pin(write_synthetic(&mut job.client, &synthetic, false)).await;
            return Turn::Closed;
        }
    }
    let conn = Conn {
        balancer: &job.ctx.balancer,
        pools: &job.ctx.pools,
        client: job.peer,
        cfg: &job.ctx.cfg,
        tls: job.ctx.tls,
    };
    Turn::Exchanged(exchange(&mut job.client, buf, head, &conn).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context as TaskContext, Wake, Waker};
    use tokio::sync::oneshot;

    /// Holds a job's exchange pending until its sender fires.
    type Gate = oneshot::Receiver<()>;
    type TestInbox = InboxRef<(u32, Gate), u32>;

    /// Executors made by the test pool (only [`pool_lends_reuses_and_completes`] makes any).
    static MADE: AtomicUsize = AtomicUsize::new(0);

    fn make(inbox: TestInbox) -> impl Future<Output = ()> {
        MADE.fetch_add(1, Ordering::SeqCst);
        doubler(inbox)
    }

    /// An exchange loop like [`executor`]'s: waits for its gate, answers twice the job.
    async fn doubler(inbox: TestInbox) {
        loop {
            let (n, gate) = next_job(&inbox).await;
            let _ = gate.await;
            lock(&inbox).done = Some(n * 2);
        }
    }

    /// Counts the wake-ups of the lending task.
    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn open_gate() -> Gate {
        let (tx, rx) = oneshot::channel();
        tx.send(()).unwrap();
        rx
    }

    fn free_len<E, J, D>(pool: &ExchangePool<E, J, D>) -> usize {
        pool.free.lock().unwrap().len()
    }

    #[test]
    fn pool_lends_reuses_and_completes() {
        let pool = ExchangePool {
            make,
            free: Mutex::new(Vec::new()),
        };
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(wakes.clone());
        let mut cx = TaskContext::from_waker(&waker);

        // An exchange that completes in its first poll: its result comes back, and its
        // executor goes back to the pool.
        let mut run = std::pin::pin!(pool.run((1, open_gate())));
        assert_eq!(run.as_mut().poll(&mut cx), Poll::Ready(Some(2)));
        assert_eq!((MADE.load(Ordering::SeqCst), free_len(&pool)), (1, 1));

        // A pending exchange: the executor is lent out while it waits, the lending task's
        // waker is what the exchange's wait registered, and the lending task's next poll
        // completes it on the same executor.
        let (tx, gate) = oneshot::channel();
        let mut run = std::pin::pin!(pool.run((2, gate)));
        assert_eq!(run.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(free_len(&pool), 0);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
        tx.send(()).unwrap();
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert_eq!(run.as_mut().poll(&mut cx), Poll::Ready(Some(4)));
        assert_eq!((MADE.load(Ordering::SeqCst), free_len(&pool)), (1, 1));

        // An exchange dropped mid-way takes its executor with it: the next one gets a new
        // executor, not one still inside another request.
        let (_tx, gate) = oneshot::channel();
        let mut run = Box::pin(pool.run((3, gate)));
        assert_eq!(run.as_mut().poll(&mut cx), Poll::Pending);
        drop(run);
        assert_eq!(free_len(&pool), 0);
        let mut run = std::pin::pin!(pool.run((4, open_gate())));
        assert_eq!(run.as_mut().poll(&mut cx), Poll::Ready(Some(8)));
        assert_eq!((MADE.load(Ordering::SeqCst), free_len(&pool)), (2, 1));
    }
}
