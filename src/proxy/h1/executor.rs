//! The exchange executors: long-lived boxed futures that run one request at a time (its head
//! read, then its exchange), lent to a connection for the length of a request
//! ([`ExchangePool`]).

use std::cell::Cell;
use std::future::Future;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::thread::LocalKey;

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

/// What passes between a lending connection and a pooled executor: a job `Self` in, its
/// result [`Handoff::Done`] out, through a slot of the thread's ([`Handoff::slot`]).
///
/// Why a thread's slot and not a slot shared by the two: the hand-off is synchronous. The
/// lender puts the job in and polls the executor at once; the executor takes it in that poll,
/// and leaves its result before the poll returns, where the lender takes it. Both sides run
/// on one thread within one call, so a `Cell` serves where a shared slot needed a lock taken
/// six to eight times a request. Each job and result carries the executor's number: a job
/// whose lender was dropped before its first poll is never taken by another executor.
pub trait Handoff: Sized + 'static {
    type Done: 'static;
    fn slot() -> &'static LocalKey<Slot<Self, Self::Done>>;
}

/// One thread's hand-off slot for jobs `J` and results `D`, each with its executor's number.
pub struct Slot<J, D> {
    job: Cell<Option<(u64, J)>>,
    done: Cell<Option<(u64, D)>>,
}

impl<J, D> Slot<J, D> {
    pub const fn new() -> Self {
        Slot {
            job: Cell::new(None),
            done: Cell::new(None),
        }
    }
}

impl Handoff for (Job, Option<Buf>) {
    type Done = (Job, Turn);
    fn slot() -> &'static LocalKey<Slot<Self, Self::Done>> {
        thread_local! {
            static SLOT: Slot<(Job, Option<Buf>), (Job, Turn)> = const { Slot::new() };
        }
        &SLOT
    }
}

/// The job put in the slot for executor `id`. It waits without a waker: only the connection
/// that lends the executor polls it, right after putting the job in.
fn next_job<J: Handoff>(id: u64) -> impl Future<Output = J> {
    std::future::poll_fn(move |_| {
        J::slot().with(|s| match s.job.take() {
            Some((to, j)) if to == id => Poll::Ready(j),
            other => {
                s.job.set(other);
                Poll::Pending
            }
        })
    })
}

/// Leaves executor `id`'s result for its lender.
fn finish<J: Handoff>(id: u64, done: J::Done) {
    J::slot().with(|s| s.done.set(Some((id, done))));
}

/// The result executor `id` left in this poll, if it finished.
fn take_done<J: Handoff>(id: u64) -> Option<J::Done> {
    J::slot().with(|s| match s.done.take() {
        Some((from, d)) if from == id => Some(d),
        other => {
            s.done.set(other);
            None
        }
    })
}

/// Numbers the executors (of every pool), so that hand-offs name theirs.
static EXECUTORS: AtomicU64 = AtomicU64::new(0);

/// A long-lived exchange loop in a box: [`executor`]'s future and its number.
struct Executor<E> {
    id: u64,
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
/// [`exchange_pool`]; `J` is what goes in to one exchange ([`Handoff`]).
pub struct ExchangePool<E, J = (Job, Option<Buf>)> {
    make: fn(u64) -> E,
    free: Mutex<Vec<Executor<E>>>,
    jobs: PhantomData<fn(J)>,
}

/// The exchange pool of one accept loop.
pub fn exchange_pool() -> ExchangePool<impl Future<Output = ()> + Send> {
    ExchangePool {
        make: executor,
        free: Mutex::new(Vec::new()),
        jobs: PhantomData,
    }
}

impl<E: Future<Output = ()>, J: Handoff> ExchangePool<E, J> {
    /// Runs one exchange on a pooled executor, polled by the calling task. `None` only if
    /// the executor's loop ended. An executor whose exchange is dropped before it ends is
    /// dropped with it, never lent again.
    ///
    /// The job goes into the thread's slot at once, for the executor's first poll: the
    /// returned future holds the executor only, not a second copy of the job for as long as
    /// the exchange runs. It is meant to be awaited where it is made; dropped unpolled, its
    /// job is dropped when the thread's next job replaces it.
    pub(super) fn run(&self, job: J) -> impl Future<Output = Option<J::Done>> + '_ {
        let popped = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let ex = popped.unwrap_or_else(|| {
            let id = EXECUTORS.fetch_add(1, Ordering::Relaxed);
            Executor {
                id,
                fut: Box::pin((self.make)(id)),
            }
        });
        J::slot().with(|s| s.job.set(Some((ex.id, job))));
        let mut lent = Some(ex);
        std::future::poll_fn(move |cx| {
            let Some(ex) = lent.as_mut() else {
                return Poll::Ready(None);
            };
            if ex.fut.as_mut().poll(cx).is_ready() {
                lent = None;
                return Poll::Ready(None); // not reached: the loop does not end
            }
            let Some(done) = take_done::<J>(ex.id) else {
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

/// Runs the requests handed to executor `id`, one after another, forever. Between two
/// requests it waits without a waker: only the connection that lends it polls it, and that
/// connection looks for its result after every poll.
async fn executor(id: u64) {
    type J = (Job, Option<Buf>);
    // The parsed head is the executor's own, reused from request to request (its field list
    // keeps its capacity): an idle connection holds none.
    let mut head = RequestHead::new();
    loop {
        let (mut job, carry) = next_job::<J>(id).await;
        let turn = request(&mut job, carry, &mut head).await;
        finish::<J>(id, (job, turn));
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
    use std::sync::atomic::AtomicUsize;
    use std::task::{Context as TaskContext, Wake, Waker};
    use tokio::sync::oneshot;

    /// Holds a job's exchange pending until its sender fires.
    type Gate = oneshot::Receiver<()>;

    impl Handoff for (u32, Gate) {
        type Done = u32;
        fn slot() -> &'static LocalKey<Slot<Self, u32>> {
            thread_local! {
                static SLOT: Slot<(u32, Gate), u32> = const { Slot::new() };
            }
            &SLOT
        }
    }

    /// Executors made by the test pool (only [`pool_lends_reuses_and_completes`] makes any).
    static MADE: AtomicUsize = AtomicUsize::new(0);

    fn make(id: u64) -> impl Future<Output = ()> {
        MADE.fetch_add(1, Ordering::SeqCst);
        doubler(id)
    }

    /// An exchange loop like [`executor`]'s: waits for its gate, answers twice the job.
    async fn doubler(id: u64) {
        loop {
            let (n, gate) = next_job::<(u32, Gate)>(id).await;
            let _ = gate.await;
            finish::<(u32, Gate)>(id, n * 2);
        }
    }

    fn pool() -> ExchangePool<impl Future<Output = ()>, (u32, Gate)> {
        ExchangePool {
            make: doubler,
            free: Mutex::new(Vec::new()),
            jobs: PhantomData,
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

    fn free_len<E, J>(pool: &ExchangePool<E, J>) -> usize {
        pool.free.lock().unwrap().len()
    }

    #[test]
    fn pool_lends_reuses_and_completes() {
        let pool = ExchangePool {
            make,
            free: Mutex::new(Vec::new()),
            jobs: PhantomData,
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

    /// Two pools on one thread, their exchanges interleaved: each result reaches its own
    /// lender. A job whose lender was dropped before polling is taken by no executor, not
    /// even one that looks for its next job while it sits in the slot.
    #[test]
    fn hand_offs_reach_their_own_lenders() {
        let (a, b) = (pool(), pool());
        let waker = Waker::from(Arc::new(Wakes::default()));
        let mut cx = TaskContext::from_waker(&waker);

        let (tx_a, gate_a) = oneshot::channel();
        let mut run_a = std::pin::pin!(a.run((10, gate_a)));
        assert_eq!(run_a.as_mut().poll(&mut cx), Poll::Pending);
        let (tx_b, gate_b) = oneshot::channel();
        let mut run_b = std::pin::pin!(b.run((20, gate_b)));
        assert_eq!(run_b.as_mut().poll(&mut cx), Poll::Pending);

        // An unpolled lender's job left in the slot while B's executor finishes and waits
        // for its next job.
        drop(a.run((5, open_gate())));
        tx_b.send(()).unwrap();
        assert_eq!(run_b.as_mut().poll(&mut cx), Poll::Ready(Some(40)));
        assert_eq!(run_a.as_mut().poll(&mut cx), Poll::Pending);
        tx_a.send(()).unwrap();
        assert_eq!(run_a.as_mut().poll(&mut cx), Poll::Ready(Some(20)));

        // The next jobs on either pool get their own results.
        let mut run = std::pin::pin!(b.run((6, open_gate())));
        assert_eq!(run.as_mut().poll(&mut cx), Poll::Ready(Some(12)));
        let mut run = std::pin::pin!(a.run((7, open_gate())));
        assert_eq!(run.as_mut().poll(&mut cx), Poll::Ready(Some(14)));
    }
}
