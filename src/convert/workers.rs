//! The conversion threads: plain threads over one queue, deliberately not a rayon pool.
//!
//! A rayon worker that waits for its own parallel work (the resize bands) runs other queued
//! jobs meanwhile, on its stack. A conversion nested that way inside another could wait at
//! the memory gate for memory the conversion beneath it holds, forever. Conversions here
//! are never nested; their parallel parts run on rayon's global pool.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Task = Box<dyn FnOnce() + Send>;

pub struct Workers {
    queue: Sender<Task>,
    /// Tasks queued or running.
    pending: Arc<AtomicUsize>,
}

impl Workers {
    pub fn new(threads: usize) -> std::io::Result<Workers> {
        let (queue, tasks) = channel::<Task>();
        let tasks = Arc::new(Mutex::new(tasks));
        for i in 0..threads.max(1) {
            let tasks = tasks.clone();
            std::thread::Builder::new()
                .name(format!("convert-{i}"))
                .spawn(move || work(&tasks))?;
        }
        Ok(Workers {
            queue,
            pending: Arc::default(),
        })
    }

    /// Queues `task`; the first free thread runs it.
    pub fn spawn(&self, task: impl FnOnce() + Send + 'static) {
        let pending = self.pending.clone();
        pending.fetch_add(1, Ordering::SeqCst);
        // The threads live as long as the queue's sender, which is `self`.
        let _ = self.queue.send(Box::new(move || {
            let _done = Done(pending);
            task();
        }));
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

/// Counts a task as done however it ends (a panic included).
struct Done(Arc<AtomicUsize>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs tasks until the queue is dropped (the mount ended).
fn work(tasks: &Mutex<Receiver<Task>>) {
    loop {
        let task = tasks.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(task) = task else {
            return;
        };
        // A task catches its own panics; this keeps the thread if a reply callback panics.
        let _ = catch_unwind(AssertUnwindSafe(task));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_task_runs_and_a_panic_keeps_the_thread() {
        let workers = Workers::new(2).unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = channel();
        workers.spawn(|| panic!("a task that panics"));
        for _ in 0..10 {
            let (done, tx) = (done.clone(), tx.clone());
            workers.spawn(move || {
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
}
