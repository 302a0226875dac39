//! The exchange executors: long-lived boxed futures that run one request's exchange at a
//! time, lent to a connection for the length of a request ([`ExchangePool`]).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use super::buffers::{Buf, PooledRequestHead, POOLED_BUFS};
use super::context::{Conn, Context};
use super::exchange::{exchange, Next};
use crate::proxy::client_io::ClientIo;

/// One request's exchange: what it owns while it runs, handed back when it ends.
pub struct Job {
    pub(super) client: ClientIo,
    pub(super) peer: SocketAddr,
    pub(super) head: PooledRequestHead,
    pub(super) ctx: Arc<Context>,
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
pub struct ExchangePool<E, J = (Job, Buf), D = (Job, Next)> {
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
    pub(super) async fn run(&self, job: J) -> Option<D> {
        let popped = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut ex = popped.unwrap_or_else(|| {
            let inbox = InboxRef::default();
            Executor {
                fut: Box::pin((self.make)(inbox.clone())),
                inbox,
            }
        });
        lock(&ex.inbox).job = Some(job);
        let out = std::future::poll_fn(|cx| {
            if ex.fut.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None); // not reached: the loop does not end
            }
            match lock(&ex.inbox).done.take() {
                Some(done) => Poll::Ready(Some(done)),
                None => Poll::Pending,
            }
        })
        .await;
        if out.is_some() {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            if free.len() < POOLED_BUFS {
                free.push(ex);
            }
        }
        out
    }
}

/// Runs the exchanges put in `inbox`, one after another, forever. Between two exchanges it
/// waits without a waker: only the connection that lends it polls it, and that connection
/// looks at `done` after every poll.
async fn executor(inbox: InboxRef<(Job, Buf), (Job, Next)>) {
    loop {
        let (mut job, buf) = next_job(&inbox).await;
        let next = {
            let conn = Conn {
                balancer: &job.ctx.balancer,
                pools: &job.ctx.pools,
                ajp: &job.ctx.upstream.ajp,
                client: job.peer,
                cfg: &job.ctx.cfg,
                tls: job.ctx.tls,
            };
            exchange(&mut job.client, buf, &job.head.0, &conn).await
        };
        lock(&inbox).done = Some((job, next));
    }
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
