//! The conversion threads: plain threads over one queue, deliberately not a rayon pool.
//!
//! A rayon worker that waits for its own parallel work (the resize bands) runs other queued
//! jobs meanwhile, on its stack. A conversion nested that way inside another could wait at
//! the memory gate for memory the conversion beneath it holds, forever. Conversions here
//! are never nested; their parallel parts run on rayon's global pool.

use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

type Task = Box<dyn FnOnce() + Send>;

/// Queued tasks, one queue per user, served in turn: a user who queues a thousand
/// conversions delays another user's next one by one of theirs, not by a thousand (second
/// hostile review of 2026-12-03: one queue, first come first served).
#[derive(Default)]
struct Queues {
    by_uid: HashMap<u32, VecDeque<Task>>,
    /// Users with queued tasks, in the order they are served next.
    turns: VecDeque<u32>,
    /// The mount ended: the threads end once the queues are empty.
    closed: bool,
}

impl Queues {
    fn push(&mut self, uid: u32, task: Task) {
        let queue = self.by_uid.entry(uid).or_default();
        if queue.is_empty() {
            self.turns.push_back(uid);
        }
        queue.push_back(task);
    }

    fn pop(&mut self) -> Option<Task> {
        let uid = self.turns.pop_front()?;
        let queue = self.by_uid.get_mut(&uid)?;
        let task = queue.pop_front();
        if queue.is_empty() {
            self.by_uid.remove(&uid);
        } else {
            self.turns.push_back(uid);
        }
        task
    }
}

#[derive(Default)]
struct Shared {
    queues: Mutex<Queues>,
    ready: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queues> {
        // Every update is one step, so a panic while holding the lock leaves consistent data.
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct Workers {
    shared: Arc<Shared>,
    /// Tasks queued or running.
    pending: Arc<AtomicUsize>,
}

impl Workers {
    pub fn new(threads: usize) -> std::io::Result<Workers> {
        let shared = Arc::new(Shared::default());
        for i in 0..threads.max(1) {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("convert-{i}"))
                .spawn(move || work(&shared))?;
        }
        Ok(Workers {
            shared,
            pending: Arc::default(),
        })
    }

    /// Queues `task` for user `uid`; the first free thread runs the next user's in turn.
    pub fn spawn(&self, uid: u32, task: impl FnOnce() + Send + 'static) {
        let pending = self.pending.clone();
        pending.fetch_add(1, Ordering::SeqCst);
        let task = Box::new(move || {
            let _done = Done(pending);
            task();
        });
        self.shared.lock().push(uid, task);
        self.shared.ready.notify_one();
    }

    /// Tasks queued or running.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// Waits until no task is queued or running, at most `timeout`; whether none is.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let start = Instant::now();
        while self.pending() > 0 {
            if start.elapsed() > timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_all();
    }
}

/// Counts a task as done however it ends (a panic included).
struct Done(Arc<AtomicUsize>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs tasks until the queues are closed (the mount ended) and empty.
fn work(shared: &Shared) {
    loop {
        let mut queues = shared.lock();
        let task = loop {
            if let Some(task) = queues.pop() {
                break task;
            }
            if queues.closed {
                return;
            }
            queues = shared.ready.wait(queues).unwrap_or_else(|e| e.into_inner());
        };
        drop(queues);
        // A task catches its own panics; this keeps the thread if a reply callback panics.
        let _ = catch_unwind(AssertUnwindSafe(task));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc::channel;

    #[test]
    fn every_task_runs_and_a_panic_keeps_the_thread() {
        let workers = Workers::new(2).unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = channel();
        workers.spawn(0, || panic!("a task that panics"));
        for _ in 0..10 {
            let (done, tx) = (done.clone(), tx.clone());
            workers.spawn(0, move || {
                done.fetch_add(1, Ordering::SeqCst);
                tx.send(()).unwrap();
            });
        }
        for _ in 0..10 {
            rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        }
        assert_eq!(done.load(Ordering::SeqCst), 10);
        assert!(workers.wait_idle(Duration::from_secs(5)));
        assert_eq!(workers.pending(), 0);
    }

    /// Second hostile review of 2026-12-03: one queue, first come first served, so a user
    /// who queued a thousand conversions made everyone else wait for all of them.
    #[test]
    fn users_are_served_in_turn() {
        let workers = Workers::new(1).unwrap();
        let (hold, held) = channel::<()>();
        workers.spawn(0, move || held.recv().unwrap());
        let order = Arc::new(Mutex::new(Vec::new()));
        let queued = [
            (1, 'a'),
            (1, 'b'),
            (1, 'c'),
            (2, 'x'),
            (1, 'd'),
            (3, 'y'),
            (2, 'z'),
        ];
        for (uid, task) in queued {
            let order = order.clone();
            workers.spawn(uid, move || order.lock().unwrap().push(task));
        }
        hold.send(()).unwrap();
        assert!(workers.wait_idle(Duration::from_secs(5)));
        let order: String = order.lock().unwrap().iter().collect();
        assert_eq!(order, "axybzcd");
    }
}
