//! Coarse deadlines for the native HTTP/1.1 path: a per-thread table checked by one ticker
//! task per thread every [`TICK`], instead of a tokio timer per wait.
//!
//! Hand-written for cost. Every tokio timer a request arms goes through the runtime's timer
//! wheel under a lock, and when its deadline is earlier than the earliest one the driver slept
//! for (a response timeout shorter than the keep-alive timeout: every request), tokio wakes
//! its own driver with an `eventfd` write and one more `epoll_wait`. Measured under load that
//! was one extra write per two to three requests. Here arming a deadline is a slot in a
//! thread-local table and a waker clone; the ticker wakes what expired. Deadlines fire up to
//! one tick late, which the second-scale timeouts they serve (header read, response,
//! keep-alive) do not notice. Fast proxies do the same (HAProxy's timer tree checked once per
//! loop turn, nginx's coarse clock).

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How often the ticker looks for expired deadlines: the most a deadline fires late.
pub const TICK: Duration = Duration::from_millis(50);
/// Ticks without any armed deadline after which a thread's ticker stops (the next deadline
/// starts it again).
const IDLE_TICKS: u32 = 200;

/// The wait reached its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

enum Slot {
    Free,
    Armed {
        deadline: Instant,
        waker: Waker,
        /// An idle keep-alive wait: woken by [`nudge_idle`] too.
        idle: bool,
    },
    Expired,
}

#[derive(Default)]
struct Table {
    slots: Vec<Slot>,
    free: Vec<u32>,
    armed: usize,
    ticker: bool,
}

type Shared = Arc<Mutex<Table>>;

thread_local! {
    /// The table deadlines armed on this thread go to. A task that moves to another thread
    /// (a multi-threaded runtime) keeps the table it armed in: the lock is uncontended on a
    /// worker's own single-threaded runtime.
    static TABLE: Shared = {
        let t = Shared::default();
        lock_tables().push(Arc::downgrade(&t));
        t
    };
}

/// Every thread's table, for [`nudge_idle`].
static TABLES: Mutex<Vec<std::sync::Weak<Mutex<Table>>>> = Mutex::new(Vec::new());

fn lock_tables() -> MutexGuard<'static, Vec<std::sync::Weak<Mutex<Table>>>> {
    TABLES.lock().unwrap_or_else(|e| e.into_inner())
}

/// Wakes every idle keep-alive wait of every thread without expiring it, so that each looks
/// at its listener's shutdown token: what a listener that stops calls. An idle connection
/// then needs no shutdown waiter of its own (a waiter node in every idle connection's state).
pub fn nudge_idle() {
    let mut woken = Vec::new();
    lock_tables().retain(|w| match w.upgrade() {
        Some(t) => {
            for s in &lock(&t).slots {
                if let Slot::Armed {
                    waker, idle: true, ..
                } = s
                {
                    woken.push(waker.clone());
                }
            }
            true
        }
        None => false,
    });
    for w in woken {
        w.wake();
    }
}

fn lock(t: &Shared) -> MutexGuard<'_, Table> {
    t.lock().unwrap_or_else(|e| e.into_inner())
}

/// One deadline, armed on the first poll that finds it not yet reached and disarmed on drop.
pub struct Deadline {
    at: Instant,
    idle: bool,
    slot: Option<(Shared, u32)>,
}

impl Deadline {
    pub fn new(at: Instant) -> Deadline {
        Deadline {
            at,
            idle: false,
            slot: None,
        }
    }

    /// The deadline of an idle keep-alive wait, also woken by [`nudge_idle`].
    pub fn idle(at: Instant) -> Deadline {
        Deadline {
            at,
            idle: true,
            slot: None,
        }
    }

    /// Moves the deadline to `at`. An armed slot keeps its place and its waker (one lock, no
    /// arming again): what a connection's keep-alive wait does between two requests. An
    /// expired one is given back, and the next poll arms anew.
    pub fn reset(&mut self, at: Instant) {
        self.at = at;
        if let Some((table, i)) = &self.slot {
            let mut t = lock(table);
            if let Some(Slot::Armed { deadline, .. }) = t.slots.get_mut(*i as usize) {
                *deadline = at;
                return;
            }
            t.release(*i);
            drop(t);
            self.slot = None;
        }
    }

    /// Ready once the deadline has passed (seen by the ticker, or at arming).
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &self.slot {
            // Armed without a clock read: a deadline already past expires at the next tick,
            // within the lateness every deadline has.
            None => {
                let Ok(table) = TABLE.try_with(Arc::clone) else {
                    return Poll::Ready(()); // the thread is exiting
                };
                let i = Table::arm(&table, self.at, cx.waker().clone(), self.idle);
                self.slot = Some((table, i));
                Poll::Pending
            }
            Some((table, i)) => match &mut lock(table).slots[*i as usize] {
                Slot::Expired => Poll::Ready(()),
                Slot::Armed { waker, .. } => {
                    if !waker.will_wake(cx.waker()) {
                        *waker = cx.waker().clone();
                    }
                    Poll::Pending
                }
                Slot::Free => Poll::Ready(()), // not reachable: the slot is ours until drop
            },
        }
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        if let Some((table, i)) = self.slot.take() {
            lock(&table).release(i);
        }
    }
}

impl Table {
    fn arm(table: &Shared, deadline: Instant, waker: Waker, idle: bool) -> u32 {
        let mut this = lock(table);
        let slot = Slot::Armed {
            deadline,
            waker,
            idle,
        };
        let i = match this.free.pop() {
            Some(i) => {
                this.slots[i as usize] = slot;
                i
            }
            None => {
                this.slots.push(slot);
                (this.slots.len() - 1) as u32
            }
        };
        this.armed += 1;
        if !this.ticker {
            this.ticker = true;
            drop(this);
            tokio::spawn(ticker(table.clone()));
        }
        i
    }

    fn release(&mut self, i: u32) {
        if let Some(s) = self.slots.get_mut(i as usize) {
            if matches!(s, Slot::Armed { .. }) {
                self.armed -= 1;
            }
            *s = Slot::Free;
            self.free.push(i);
        }
    }

    /// Marks what expired by `now` and returns how many deadlines are still armed.
    fn expire(&mut self, now: Instant, woken: &mut Vec<Waker>) -> usize {
        for s in &mut self.slots {
            if let Slot::Armed { deadline, .. } = s {
                if *deadline <= now {
                    if let Slot::Armed { waker, .. } = std::mem::replace(s, Slot::Expired) {
                        woken.push(waker);
                    }
                    self.armed -= 1;
                }
            }
        }
        self.armed
    }
}

/// Marks the table tickerless when its ticker ends, returns or is dropped with its runtime,
/// so that the next deadline starts a new one.
struct TickerGuard(Shared);

impl Drop for TickerGuard {
    fn drop(&mut self) {
        lock(&self.0).ticker = false;
    }
}

/// A table's ticker: every [`TICK`], wakes the waits whose deadline passed.
async fn ticker(table: Shared) {
    let guard = TickerGuard(table);
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut idle = 0;
    let mut woken = Vec::new();
    loop {
        interval.tick().await;
        let armed = lock(&guard.0).expire(Instant::now(), &mut woken);
        // Woken outside the lock: a woken task may run on another thread at once.
        for w in woken.drain(..) {
            w.wake();
        }
        idle = if armed == 0 { idle + 1 } else { 0 };
        if idle >= IDLE_TICKS {
            let mut t = lock(&guard.0);
            if t.armed == 0 {
                // Cleared while still locked, so an arming thread either sees the ticker
                // running or starts a new one (the guard clears it once more: at worst two
                // tickers serve one table for a while).
                t.ticker = false;
                return;
            }
            idle = 0;
        }
    }
}

/// `fut`, or [`Elapsed`] once `at` has passed (within a [`TICK`]).
pub async fn timeout_at<F: Future>(at: Instant, fut: F) -> Result<F::Output, Elapsed> {
    let mut fut = std::pin::pin!(fut);
    let mut deadline = Deadline::new(at);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        deadline.poll_expired(cx).map(|()| Err(Elapsed))
    })
    .await
}

/// [`timeout_pending`] for a wait made of several calls (a head read in pieces): `deadline` is
/// set `limit` after the first moment one of them found its future pending, and bounds every
/// call from then on. A wait whose bytes are all there reads no clock.
pub async fn timeout_pending_from<F: Future>(
    deadline: &mut Option<Instant>,
    limit: Duration,
    fut: F,
) -> Result<F::Output, Elapsed> {
    let mut fut = std::pin::pin!(fut);
    let mut armed: Option<Deadline> = None;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        let at = *deadline.get_or_insert_with(|| Instant::now() + limit);
        armed
            .get_or_insert_with(|| Deadline::new(at))
            .poll_expired(cx)
            .map(|()| Err(Elapsed))
    })
    .await
}

/// `fut`, or [`Elapsed`] once it has been pending for `limit` (within a [`TICK`]). The clock
/// is read, and a deadline armed, only if the first poll finds it pending: a read whose bytes
/// are already there, or a write the socket buffer takes at once, costs neither. What bounds
/// the gaps of a body, each read and write with its own call.
pub async fn timeout_pending<F: Future>(limit: Duration, fut: F) -> Result<F::Output, Elapsed> {
    let mut fut = std::pin::pin!(fut);
    let mut deadline: Option<Deadline> = None;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        deadline
            .get_or_insert_with(|| Deadline::new(Instant::now() + limit))
            .poll_expired(cx)
            .map(|()| Err(Elapsed))
    })
    .await
}

/// `fut`, or [`Elapsed`] after `d`.
pub async fn timeout<F: Future>(d: Duration, fut: F) -> Result<F::Output, Elapsed> {
    timeout_at(Instant::now() + d, fut).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_future_wins() {
        let r = timeout(Duration::from_secs(5), async { 7 }).await;
        assert_eq!(r, Ok(7));
    }

    #[tokio::test]
    async fn pending_future_times_out_within_a_tick() {
        let start = Instant::now();
        let r = timeout(Duration::from_millis(120), std::future::pending::<()>()).await;
        assert_eq!(r, Err(Elapsed));
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(120), "{took:?}");
    }

    /// A deadline already past when armed elapses at the ticker's next look (armed without a
    /// clock read), not never.
    #[tokio::test]
    async fn past_deadline_is_elapsed_at_the_next_tick() {
        let r = timeout_at(
            Instant::now() - Duration::from_millis(1),
            std::future::pending::<()>(),
        )
        .await;
        assert_eq!(r, Err(Elapsed));
    }

    #[tokio::test]
    async fn dropped_waits_free_their_slots() {
        for _ in 0..100 {
            let r = timeout(Duration::from_secs(60), tokio::task::yield_now()).await;
            assert!(r.is_ok());
        }
        let (slots, armed) = TABLE.with(|t| {
            let t = lock(t);
            (t.slots.len(), t.armed)
        });
        assert_eq!(armed, 0);
        assert!(slots <= 1, "slots are reused: {slots}");
    }

    /// A reset moves an armed deadline in place (the slot and its waker kept), and gives an
    /// expired one back so that the next poll arms it anew.
    #[tokio::test]
    async fn reset_moves_armed_and_rearms_expired_deadlines() {
        async fn expired(d: &mut Deadline) -> bool {
            std::future::poll_fn(|cx| Poll::Ready(d.poll_expired(cx).is_ready())).await
        }
        let mut d = Deadline::idle(Instant::now() + Duration::from_millis(60));
        assert!(!expired(&mut d).await, "armed at the first poll");
        let slot = d.slot.as_ref().map(|(_, i)| *i);
        d.reset(Instant::now() + Duration::from_secs(60));
        assert_eq!(d.slot.as_ref().map(|(_, i)| *i), slot, "the same slot");
        tokio::time::sleep(Duration::from_millis(60) + 3 * TICK).await;
        assert!(!expired(&mut d).await, "moved past the old deadline");

        d.reset(Instant::now() + Duration::from_millis(10));
        let start = Instant::now();
        std::future::poll_fn(|cx| d.poll_expired(cx)).await;
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(expired(&mut d).await);

        d.reset(Instant::now() + Duration::from_secs(60));
        assert!(d.slot.is_none(), "an expired slot is given back");
        assert!(!expired(&mut d).await, "armed anew");
        d.reset(Instant::now() + Duration::from_millis(10));
        std::future::poll_fn(|cx| d.poll_expired(cx)).await;
        drop(d);
        let armed = TABLE.with(|t| lock(t).armed);
        assert_eq!(armed, 0);
    }

    #[tokio::test]
    async fn nudge_wakes_idle_waits_without_expiring_them() {
        let woken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = woken.clone();
        let mut idle = Deadline::idle(Instant::now() + Duration::from_secs(60));
        let mut busy = Deadline::new(Instant::now() + Duration::from_secs(60));
        let task = tokio::spawn(async move {
            std::future::poll_fn(|cx| {
                let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                assert!(
                    idle.poll_expired(cx).is_pending(),
                    "a nudge does not expire"
                );
                assert!(busy.poll_expired(cx).is_pending());
                if n == 1 {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await
        });
        while woken.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        nudge_idle();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the idle wait was woken")
            .expect("task");
    }

    #[tokio::test]
    async fn timeout_pending_arms_only_when_pending() {
        let r = timeout_pending(Duration::from_millis(1), async { 5 }).await;
        assert_eq!(r, Ok(5));
        let armed = TABLE.with(|t| lock(t).armed);
        assert_eq!(armed, 0);
        let start = Instant::now();
        let r = timeout_pending(Duration::from_millis(100), std::future::pending::<()>()).await;
        assert_eq!(r, Err(Elapsed));
        assert!(start.elapsed() >= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn a_later_wake_of_the_future_still_completes() {
        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(60)).await;
            let _ = tx.send(3);
        });
        let r = timeout(Duration::from_secs(5), rx).await;
        assert_eq!(r, Ok(Ok(3)));
    }
}
