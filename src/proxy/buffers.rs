//! Per-thread pools of what a request borrows only while its bytes move: byte buffers
//! ([`Buf`]) and parsed response heads, and the two calls every such pool is
//! made of ([`take_from`], [`give_back`]); and a per-thread scratch buffer for one
//! synchronous call ([`with_scratch`]). An idle keep-alive connection holds none of them.

use std::cell::RefCell;
use std::thread::LocalKey;

use crate::h1::ResponseHead;

/// Size of a pooled buffer; a larger head grows it up to the listener's `max_header_bytes`.
pub(crate) const BUF_SIZE: usize = 16 * 1024;
/// How many buffers, heads or exchange executors one pool keeps for reuse.
pub(crate) const POOLED_BUFS: usize = 256;

/// One thread's pool of `T`.
pub(crate) type Pool<T> = LocalKey<RefCell<Vec<T>>>;

/// The most recently given back item of `pool`, if it holds one.
pub(crate) fn take_from<T>(pool: &'static Pool<T>) -> Option<T> {
    pool.with(|p| p.borrow_mut().pop())
}

/// Keeps `item` in `pool` for reuse while it holds fewer than `limit` items; else drops it.
pub(crate) fn give_back<T>(pool: &'static Pool<T>, item: T, limit: usize) {
    pool.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < limit {
            p.push(item);
        }
    });
}

thread_local! {
    static BUFS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer from this thread's pool, given back (emptied) on drop.
pub struct Buf(pub(crate) Vec<u8>);

impl Buf {
    pub(crate) fn take() -> Buf {
        Buf(take_from(&BUFS).unwrap_or_else(|| Vec::with_capacity(BUF_SIZE)))
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        let mut b = std::mem::take(&mut self.0);
        if b.capacity() == 0 || b.capacity() > 4 * BUF_SIZE {
            return; // a grown buffer is not kept
        }
        b.clear();
        give_back(&BUFS, b, POOLED_BUFS);
    }
}

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch buffer, emptied: for bytes formatted and used within
/// one synchronous call (a head's forwarding values), cheaper than a pooled [`Buf`].
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        s.clear();
        let r = f(&mut s);
        if s.capacity() > BUF_SIZE {
            *s = Vec::new(); // a long chain's bytes are not kept
        }
        r
    })
}

/// The bytes of `buf` after `used`, in a pooled buffer; `None` when there are none.
pub(crate) fn rest_after(buf: &[u8], used: usize) -> Option<Buf> {
    let rest = buf.get(used..).filter(|r| !r.is_empty())?;
    let mut b = Buf::take();
    b.0.extend_from_slice(rest);
    Some(b)
}

thread_local! {
    // Boxed in the pool too: taking a head out and giving it back move a pointer.
    #[allow(clippy::vec_box)]
    static RESP_HEADS: RefCell<Vec<Box<ResponseHead>>> = const { RefCell::new(Vec::new()) };
}

/// A response head from this thread's pool (its field vector keeps its capacity), given
/// back on drop. Boxed: taking and giving back move a pointer, not the head.
pub(crate) struct PooledResponseHead(Option<Box<ResponseHead>>);

impl PooledResponseHead {
    pub(crate) fn take() -> PooledResponseHead {
        PooledResponseHead(Some(take_from(&RESP_HEADS).unwrap_or_default()))
    }

    pub(crate) fn head(&mut self) -> &mut ResponseHead {
        self.0.get_or_insert_default()
    }
}

impl Drop for PooledResponseHead {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            give_back(&RESP_HEADS, h, POOLED_BUFS);
        }
    }
}
